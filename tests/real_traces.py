"""The real traces under ../shared/traces, found rather than listed (a trace added there is
covered with no code change), and small versions of them to mutate.

Shared by the tests (test_shared_traces, test_fuzz) and the fuzz benchmark
(benchmarks/fuzz_traces.py). A trace is a ``*.json.gz``, a ``*.json`` holding a Kineto
trace, or an Nsight Systems ``*.sqlite`` export, anywhere below the folder except in a
``capture_traces/`` folder (graph-capture traces and their execution details: inputs for
the trace beside them, not runs). A run is each top-level folder.
"""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import SHARED_TRACES

NOT_RUNS = "capture_traces"
ABSENT = "../shared/traces is absent here: the real public traces are not checked"


def is_kineto_json(path: Path) -> bool:
    """A plain ``.json`` that holds a Chrome/Kineto trace (not, e.g., execution details)."""
    with path.open("rb") as f:
        head = f.read(1 << 16)
    return head.lstrip()[:1] == b"[" or b'"traceEvents"' in head


def trace_files(root: Path = SHARED_TRACES) -> list[Path]:
    """Every trace file below ``root`` (none where it is absent), in path order."""
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or NOT_RUNS in path.relative_to(root).parts:
            continue
        name = path.name.lower()
        if name.endswith((".json.gz", ".sqlite")) or (
            name.endswith(".json") and is_kineto_json(path)
        ):
            out.append(path)
    return out


def run_folders(root: Path = SHARED_TRACES) -> list[Path]:
    """Each top-level folder: one run (one or more rank files)."""
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def rank_files(folder: Path) -> list[Path]:
    """The trace files directly in ``folder`` (what its analysis reads as ranks)."""
    return [p for p in trace_files(folder) if p.parent == folder]


def label(path: Path, root: Path = SHARED_TRACES) -> str:
    """A readable id: the path below ``root``, a folder with a trailing slash."""
    relative = path.relative_to(root).as_posix()
    return relative + "/" if path.is_dir() else relative


def load_doc(path: Path) -> Any:
    """A Kineto trace's JSON document (a dict, or the bare list form)."""
    data = path.read_bytes()
    return orjson.loads(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)


def reduced_doc(path: Path, events: int) -> dict[str, Any]:
    """A Kineto trace with about ``events`` of its events, in file order, and all its other
    top-level keys: half a contiguous stretch of time from the middle of the trace (kernels
    with the runtime calls that launched them, steps with their ops: the structure the
    stages link), the rest an even sample of the whole, and its first non-complete events
    (metadata), at most a tenth."""
    doc = load_doc(path)
    doc = dict({"traceEvents": doc} if isinstance(doc, list) else doc)
    every: list[Any] = doc.get("traceEvents") or []
    if len(every) <= events:
        return doc
    complete = [i for i, e in enumerate(every) if e.get("ph") == "X" and _number(e.get("ts"))]
    by_time = sorted(complete, key=lambda i: every[i]["ts"])
    middle = max(0, len(by_time) // 2 - events // 4)
    keep = set(by_time[middle : middle + events // 2])
    keep |= set(range(0, len(every), max(1, len(every) // (events // 2))))
    keep |= set([i for i, e in enumerate(every) if e.get("ph") != "X"][: events // 10])
    doc["traceEvents"] = [every[i] for i in sorted(keep)]
    return doc


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def reduced_sqlite(path: Path, dest: Path, rows: int) -> Path:
    """A copy of an Nsight Systems export with at most ``rows`` rows per table."""
    shutil.copyfile(path, dest)
    with closing(sqlite3.connect(dest)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            try:
                db.execute(f"DELETE FROM [{table}] WHERE rowid > ?", (rows,))
            except sqlite3.OperationalError:  # a table without rowid: kept whole
                continue
        db.commit()
        db.execute("VACUUM")
    return dest


def sqlite_cells(db: sqlite3.Connection) -> list[tuple[str, list[str], int]]:
    """(table, columns, rows) of each table of an export that holds rows."""
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    out = []
    for table in names:
        rows = db.execute(f"SELECT count(*) FROM [{table}]").fetchone()[0]
        columns = [r[1] for r in db.execute(f"PRAGMA table_info([{table}])")]
        if rows and columns:
            out.append((table, columns, int(rows)))
    return out
