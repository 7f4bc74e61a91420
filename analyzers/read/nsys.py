"""Read an Nsight Systems SQLite export (``nsys export --type=sqlite``) into per-rank tables.

Every table is read with bulk SQL into numpy columns (never a Python loop over rows; loops
run over distinct names and memcpy kinds only). nsys creates tables lazily and their columns
vary across versions, so each table and column is looked up in ``sqlite_master`` /
``table_info`` first and what is absent is tolerated. Timestamps are integer nanoseconds on
the session clock, shifted once by ``TARGET_INFO_SESSION_START_TIME.utcEpochNs`` onto
absolute (UTC epoch) time when the export has it.

Each active (device, process) pair becomes one rank: the device's kernels, memcpy and memset
of that process, plus all of the process's host events (CUDA runtime/driver calls, NVTX
ranges as annotations on their thread). A ``globalTid`` packs the OS pid and tid:
pid = (globalTid >> 24) & 0xFFFFFF, tid = globalTid & 0xFFFFFF (bits above 48: the host).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzers.read.kineto import ParsedTrace
from analyzers.read.nsys_names import memcpy_name, memory_label
from tracekit.core.errors import TracekitError
from tracekit.core.trace_model import (
    COLUMNS,
    DEVICE_KINDS,
    NO_VALUE,
    OPTIONAL_COLUMNS,
    Events,
    Kind,
    ShapeTable,
)

I64 = npt.NDArray[np.int64]
Gpu = dict[str, Any]
_CudaIds = dict[tuple[int | None, int], int]  # (pid, CUDA ordinal in the process) -> GPU id
_CUPTI = ("KERNEL", "MEMCPY", "MEMSET", "RUNTIME")
KERNEL, MEMCPY, MEMSET, RUNTIME = (f"CUPTI_ACTIVITY_KIND_{k}" for k in _CUPTI)
GRAPH_TRACE = "CUPTI_ACTIVITY_KIND_GRAPH_TRACE"  # --cuda-graph-trace=graph: one row per launch
NVTX, STRINGS = "NVTX_EVENTS", "StringIds"
GPU_INFO = "TARGET_INFO_GPU"
CUDA_DEVICE = "TARGET_INFO_CUDA_DEVICE"
SESSION_START = "TARGET_INFO_SESSION_START_TIME"
EXPORT_TABLES = (KERNEL, MEMCPY, MEMSET, GRAPH_TRACE, RUNTIME, NVTX, STRINGS, GPU_INFO)
_TABLES = "CUPTI_ACTIVITY_KIND_*, NVTX_EVENTS or StringIds"

SQLITE_SUFFIXES = (".sqlite", ".sqlite3")
REPORT_SUFFIXES = (".nsys-rep", ".qdrep")
SQLITE_MAGIC = b"SQLite format 3\x00"
NVTX_RANGES = (59, 60)  # NvtxPushPopRange, NvtxStartEndRange
NVTX_DOMAIN_CREATE = 75
BACKTRACE_CLASS = 67  # TRACE_PROCESS_EVENT_CUDABACKTRACE: a second copy of a runtime call
CHUNK_ROWS = 65_536
_MAX_BASE_NS = 4 * 10**18
_MAX_NS = 2**62
_API_VERSION = re.compile(r"_v\d+$")  # cudaLaunchKernel_v7000 -> cudaLaunchKernel
_DEVICE_TABLES = ((KERNEL, Kind.KERNEL), (MEMCPY, Kind.MEMCPY), (MEMSET, Kind.MEMSET))
#: the columns an export fills (no external ids, shapes, message or group sizes: those default)
_OPTIONAL = {k for k, _ in OPTIONAL_COLUMNS}
_EVENT_COLUMNS = [k for k in COLUMNS if k != "external_id" and k not in _OPTIONAL]
GRAPH_NAME = "CUDA graph (whole graph: record with --cuda-graph-trace=node)"
# TARGET_INFO_GPU columns, renamed to Kineto's deviceProperties keys where it has one.
# memoryBandwidth is in bytes/s, clockRate in Hz, totalMemory in bytes.
_GPU_PROPS = dict(totalMemory="totalGlobalMem", smCount="numSms", id="nsysGpuId")
_GPU_PROPS |= {k: k for k in ("name", "memoryBandwidth", "clockRate", "busLocation", "uuid")}
_GPU_PROPS |= {k: k for k in ("computeMajor", "computeMinor", "cuDevice")}


def is_nsys(path: Path) -> bool:
    """An Nsight Systems report or SQLite export, by suffix or by the SQLite magic bytes."""
    if path.suffix.lower() in SQLITE_SUFFIXES + REPORT_SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def parse_nsys(path: Path) -> list[ParsedTrace]:
    """One ParsedTrace per active (device, process) pair. Raises TracekitError."""
    if path.suffix.lower() in REPORT_SUFFIXES:
        if not path.is_file():
            raise TracekitError(path, "no such file")
        with exported(path) as sqlite_path:
            return read_export(sqlite_path, shown=path)
    return read_export(path)


@contextmanager
def exported(report: Path) -> Iterator[Path]:
    """``nsys export --type=sqlite`` of ``report`` into a temporary folder."""
    nsys = shutil.which("nsys")
    if nsys is None:
        how = f"nsys export --type=sqlite --output {report.stem}.sqlite {report.name}"
        raise TracekitError(report, f"nsys not on PATH: export with `{how}`, analyse the .sqlite")
    with tempfile.TemporaryDirectory(prefix="tracekit-nsys-") as tmp:
        out = Path(tmp) / f"{report.stem}.sqlite"
        cmd = [nsys, "export", "--type=sqlite", "--output", str(out), str(report)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise TracekitError(report, f"cannot run nsys ({exc})") from None
        if done.returncode != 0 or not out.is_file():
            said = ["", *(done.stderr or done.stdout or "").strip().splitlines()][-1]
            raise TracekitError(report, f"nsys export failed (exit {done.returncode}): {said}")
        yield out


def read_export(path: Path, shown: Path | None = None) -> list[ParsedTrace]:
    """Read the SQLite export at ``path``; errors name ``shown`` (the user's file)."""
    shown = shown or path
    _check_header(path, shown)
    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as db:
            db.text_factory = lambda b: b.decode("utf-8", "replace")  # odd bytes in a name
            return _Reader(db, shown).ranks()
    except (sqlite3.Error, UnicodeDecodeError) as exc:  # the latter: a garbled schema
        raise TracekitError(shown, f"corrupt SQLite export ({exc})") from None


def _check_header(path: Path, shown: Path) -> None:
    """Not SQLite, or shorter than its header says (a truncated copy): say so up front."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        raise TracekitError(shown, "no such file") from None
    except OSError as exc:
        raise TracekitError(shown, f"cannot read: {exc.strerror or exc}") from None
    if not head:
        raise TracekitError(shown, "empty file")
    if head[:16] != SQLITE_MAGIC:
        raise TracekitError(shown, "not an SQLite database (nor an nsys SQLite export)")
    page = {1: 65536}.get(raw := int.from_bytes(head[16:18], "big"), raw)
    pages = int.from_bytes(head[28:32], "big")
    # The in-header page count is valid when its change counter matches (bytes 24 and 92).
    if len(head) < 100 or (head[24:28] == head[92:96] and size < page * pages):
        raise TracekitError(shown, f"truncated SQLite file: {size} of {page * pages} bytes")


_TIMED = 'n.start IS NOT NULL AND n."end" IS NOT NULL'


class _Reader:
    """One pass over an export: every process's device and host rows, then split by rank."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db, self.path = db, path
        self.tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master")}
        self.names: dict[str, int] = {}
        self.parts: list[dict[str, I64]] = []
        self.ignored: dict[str, list[I64]] = {}  # why rows were left out: their process keys
        self._strings: dict[int, str] | None = None

    def columns(self, table: str) -> set[str]:
        return {str(r[1]) for r in self.db.execute(f'PRAGMA table_info("{table}")')}

    def fetch(self, table: str, select: list[str], where: str, join: str = "") -> I64:
        """Integer columns as an (n, len(select)) array, converted a chunk of rows at a time."""
        cursor = self.db.execute(f"SELECT {', '.join(select)} FROM {table} n{join} WHERE {where}")
        chunks = []
        try:
            while rows := cursor.fetchmany(CHUNK_ROWS):
                flat = chain.from_iterable(rows)
                chunks.append(np.fromiter(flat, np.int64, len(rows) * len(select)))
        except (TypeError, ValueError, OverflowError) as exc:
            raise TracekitError(self.path, f"corrupt export: {table}: {exc}") from None
        return np.concatenate(chunks or [np.empty(0, np.int64)]).reshape(-1, len(select))

    def intern(self, values: list[str]) -> I64:
        for value in dict.fromkeys(values):
            self.names.setdefault(value, len(self.names))
        return np.fromiter(map(self.names.__getitem__, values), np.int64, len(values))

    def by_key(self, keys: I64, name_of: Callable[[int], str]) -> I64:
        """Local name ids for integer keys, naming each distinct key once."""
        uniq, inverse = np.unique(keys, return_inverse=True)
        return self.intern([name_of(int(k)) for k in uniq])[inverse.reshape(-1)]

    def string(self, sid: int) -> str:
        if self._strings is None:
            sql = f"SELECT id, value FROM {STRINGS} WHERE typeof(id) = 'integer'"
            have = STRINGS in self.tables
            self._strings = {int(i): str(v) for i, v in self.db.execute(sql)} if have else {}
        return self._strings.get(sid, f"unknown (string id {sid})")

    def add(self, kind: Kind, rows: I64, name: I64, domain: I64 | None = None) -> None:
        """rows: start, end, then deviceId, streamId, correlationId, globalPid (device
        tables) or globalTid, correlationId (host tables)."""
        start, end = rows[:, 0], rows[:, 1]
        none = np.full(len(rows), NO_VALUE, np.int64)
        if kind in DEVICE_KINDS:  # as in Kineto, a device event's pid/tid are device/stream
            device, stream, corr, gid = rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5]
            pid, tid = device, stream
        else:
            gid, corr, device, stream = rows[:, 2], rows[:, 3], none, none
            pid, tid = (gid >> 24) & 0xFFFFFF, gid & 0xFFFFFF
        bad = (end < start) | (start < -_MAX_NS) | (end > _MAX_NS)
        if bad.any():
            self.ignore(f"{kind.name.lower()}s with corrupt times", _process(gid[bad]))
        cols = {"start_ns": start, "dur_ns": end - start, "kind": np.full(len(rows), kind, np.int8)}
        cols |= {"name_id": name.astype(np.int32), "pid": pid, "tid": tid, "correlation": corr}
        cols |= {"stream": stream, "device": device, "proc": _process(gid)}
        cols["domain"] = none if domain is None else domain
        self.parts.append({k: v[~bad] for k, v in cols.items()} if bad.any() else cols)

    def ignore(self, why: str, processes: I64) -> None:
        self.ignored.setdefault(why, []).append(processes)

    def col(self, cols: set[str], name: str, default: int = NO_VALUE) -> str:
        return f"COALESCE(n.{name}, {default})" if name in cols else str(default)

    def device_table(self, table: str, kind: Kind) -> None:
        cols = self.columns(table)
        if not {"start", "end"} <= cols:
            raise TracekitError(self.path, f"corrupt export: {table} has no start/end columns")
        ids = ("deviceId", "streamId", "correlationId", "globalPid")
        select = ["n.start", 'n."end"', *(self.col(cols, c) for c in ids)]
        if table == KERNEL:
            named = [f"n.{c}" for c in ("demangledName", "shortName", "mangledName") if c in cols]
            select.append(f"COALESCE({', '.join(named)}, -1)" if named else "-1")
        elif table == MEMCPY:
            select += [self.col(cols, c) for c in ("copyKind", "srcKind", "dstKind")]
        elif table == MEMSET:
            select.append(self.col(cols, "memKind"))
        rows = self.fetch(table, select, _TIMED)
        if table == KERNEL:
            name = self.by_key(rows[:, 6], lambda k: self.string(k) if k >= 0 else "kernel")
        elif table == MEMCPY:
            key = rows[:, 6] * 1_000_000 + (rows[:, 7] + 1) * 1000 + rows[:, 8] + 1
            name = self.by_key(key, memcpy_name)
        elif table == MEMSET:
            name = self.by_key(rows[:, 6], lambda k: f"Memset ({memory_label(k)})")
        else:
            name = self.intern([GRAPH_NAME]).repeat(len(rows))
            self.ignore(f"graph-level records: {GRAPH_NAME}", _process(rows[:, 5]))
        self.add(kind, rows, name)

    def runtime(self) -> None:
        cols = self.columns(RUNTIME)
        where = _TIMED
        if "eventClass" in cols:
            where += f" AND COALESCE(n.eventClass, 0) != {BACKTRACE_CLASS}"
        ids = ("globalTid", "correlationId", "nameId")
        rows = self.fetch(RUNTIME, ["n.start", 'n."end"', *(self.col(cols, c) for c in ids)], where)
        name = self.by_key(rows[:, 4], lambda k: _API_VERSION.sub("", self.string(k)))
        self.add(Kind.RUNTIME, rows, name)

    def nvtx(self) -> dict[int, str]:
        """NVTX ranges become annotations on their thread. Returns domain id -> name."""
        cols = self.columns(NVTX)
        threads = [f"n.{c}" for c in ("globalTid", "endGlobalTid") if c in cols]
        tid = f"COALESCE({', '.join(threads)}, -1)" if threads else "-1"
        ranges = f"n.eventType IN {NVTX_RANGES}" if "eventType" in cols else "1"
        text, join = (["n.text"] if "text" in cols else []), ""
        if "textId" in cols and STRINGS in self.tables:
            text.append("s.value")
            join = f" LEFT JOIN {STRINGS} s ON s.id = n.textId"
        label = f"COALESCE({', '.join(text)}, '')" if text else "''"
        where = f"{_TIMED} AND {ranges} ORDER BY n.rowid"
        select = ["n.start", 'n."end"', tid, "-1", self.col(cols, "domainId", 0)]
        rows = self.fetch(NVTX, select, where, join)
        cursor = self.db.execute(f"SELECT {label} FROM {NVTX} n{join} WHERE {where}")
        labels = list(map(str, map(itemgetter(0), cursor.fetchall())))
        self.add(Kind.ANNOTATION, rows, self.intern(labels), domain=rows[:, 4])
        unclosed = self.fetch(NVTX, [tid], f'{ranges} AND n."end" IS NULL')[:, 0]
        self.ignore("NVTX ranges never closed in the capture", _process(unclosed))
        if "eventType" not in cols or "domainId" not in cols:
            return {}
        sql = f"SELECT n.domainId, {label} FROM {NVTX} n{join} WHERE n.eventType = ?"
        rows_ = self.db.execute(sql + " AND typeof(n.domainId) = 'integer'", (NVTX_DOMAIN_CREATE,))
        return {int(d): str(t) for d, t in rows_}

    def ranks(self) -> list[ParsedTrace]:
        if not self.tables & set(EXPORT_TABLES):
            raise TracekitError(self.path, f"not an Nsight Systems export: no {_TABLES} tables")
        for table, kind in (*_DEVICE_TABLES, (GRAPH_TRACE, Kind.KERNEL)):
            if table in self.tables:
                self.device_table(table, kind)
        if not sum(len(p["start_ns"]) for p in self.parts):
            how = "capture with `nsys profile --trace=cuda,nvtx`"
            raise TracekitError(self.path, f"no GPU activity (no kernels, memcpy or memset): {how}")
        if RUNTIME in self.tables:
            self.runtime()
        domains = self.nvtx() if NVTX in self.tables else {}
        order = np.argsort(np.concatenate([p["start_ns"] for p in self.parts]), kind="stable")
        c = {k: np.concatenate([p[k] for p in self.parts]).take(order) for k in self.parts[0]}
        base, clock = self.session_start()
        c["start_ns"] = c["start_ns"] + base
        is_device = np.isin(c["kind"], DEVICE_KINDS)
        # (process, device) pairs as one int64 key: proc < 2**40, device + 1 < 2**16.
        pairs = np.unique((c["proc"][is_device] << 16) | ((c["device"][is_device] + 1) & 0xFFFF))
        gpus, cuda_ids, processes = self.gpus(), self.cuda_devices(), self.processes()
        version = self.meta("EXPORT_PRODUCT_VERSION")
        left_out = {why: np.concatenate(keys) for why, keys in self.ignored.items()}
        out = []
        for proc, device in ((k >> 16, (k & 0xFFFF) - 1) for k in pairs.tolist()):
            mask = (c["proc"] == proc) & (~is_device | (c["device"] == device))
            rows = slice(None) if mask.all() else np.flatnonzero(mask)  # one rank: no copy
            no_ids = np.full(int(mask.sum()), NO_VALUE, np.int64)
            pid = proc & 0xFFFFFF if proc >= 0 else NO_VALUE
            gpu, how = _gpu_for(gpus, cuda_ids, pid, device)
            process = processes.get(proc, "")
            label = f"pid {pid}{f' {process}' if process else ''}, CUDA device {device}"
            label += f" ({gpu['name']})" if gpu and "name" in gpu else ""
            annotated = c["domain"][rows][c["kind"][rows] == Kind.ANNOTATION]
            dom, counts = np.unique(annotated, return_counts=True)
            nsys = {"label": label, "pid": pid, "process": process, "device": device}
            nsys |= {"gpu": gpu.get("name") if gpu else None, "gpu_source": how, "version": version}
            named = [domains.get(d, "default" if d == 0 else f"domain {d}") for d in dom.tolist()]
            domain_counts = dict(zip(named, counts.tolist(), strict=True))
            ignored = {why: int((keys == proc).sum()) for why, keys in left_out.items()}
            out.append(
                ParsedTrace(
                    events=Events(
                        **{k: c[k][rows] for k in _EVENT_COLUMNS},
                        external_id=no_ids,
                        shapes=ShapeTable(),
                    ),
                    names=list(self.names),
                    clock=clock,
                    distributed_info=None,
                    device_properties=[{**gpu, "id": device}] if gpu else [],
                    metadata={"nsys": nsys, "nvtx_domains": domain_counts},
                    ignored={why: n for why, n in ignored.items() if n},
                )
            )
        return out

    def session_start(self) -> tuple[int, str]:
        if SESSION_START in self.tables and "utcEpochNs" in self.columns(SESSION_START):
            row = self.db.execute(f"SELECT utcEpochNs FROM {SESSION_START}").fetchone()
            if row and isinstance(row[0], int):
                if not 0 <= row[0] <= _MAX_BASE_NS:
                    raise TracekitError(self.path, f"corrupt export: session start {row[0]} ns")
                return row[0], f"nsys session start ({SESSION_START}.utcEpochNs)"
        return 0, f"nsys session clock (no {SESSION_START})"

    def meta(self, key: str) -> str | None:
        sql = "SELECT value FROM EXPORT_META_DATA WHERE name = ?"
        have = "EXPORT_META_DATA" in self.tables
        row = self.db.execute(sql, (key,)).fetchone() if have else None
        return str(row[0]) if row else None

    def gpus(self) -> dict[int, Gpu]:
        """TARGET_INFO_GPU rows by nsys GPU id, with Kineto's deviceProperties keys."""
        have = [c for c in _GPU_PROPS if GPU_INFO in self.tables and c in self.columns(GPU_INFO)]
        sql = f"SELECT {', '.join(have)} FROM {GPU_INFO}"
        rows = self.db.execute(sql).fetchall() if "id" in have else []
        props = [{_GPU_PROPS[k]: v for k, v in zip(have, r, strict=True)} for r in rows]
        return {p["nsysGpuId"]: p for p in props if isinstance(p["nsysGpuId"], int)}

    def cuda_devices(self) -> _CudaIds:
        cols = self.columns(CUDA_DEVICE) if CUDA_DEVICE in self.tables else set()
        if not {"gpuId", "cudaId"} <= cols:
            return {}
        pid = "pid" if "pid" in cols else "NULL"
        sql = f"SELECT {pid}, cudaId, gpuId FROM {CUDA_DEVICE} WHERE typeof(cudaId) = 'integer'"
        return {(p, d): g for p, d, g in self.db.execute(sql) if isinstance(g, int)}

    def processes(self) -> dict[int, str]:
        if "PROCESSES" not in self.tables or not {"globalPid", "name"} <= self.columns("PROCESSES"):
            return {}
        sql = "SELECT globalPid >> 24, name FROM PROCESSES WHERE typeof(globalPid) = 'integer'"
        return {p: str(n) for p, n in self.db.execute(sql) if n is not None}


def _process(global_id: I64) -> I64:
    """The process key of a globalTid/globalPid: host bits and pid (-1 where unknown)."""
    return np.where(global_id >= 0, global_id >> 24, NO_VALUE)


def _gpu_for(gpus: dict[int, Gpu], cuda: _CudaIds, pid: int, device: int) -> tuple[Gpu | None, str]:
    """The GPU behind a process's CUDA device ordinal, and how that was decided."""
    gid = cuda.get((pid, device), cuda.get((None, device)))
    if gid is not None and gid in gpus:
        return gpus[gid], CUDA_DEVICE
    if len(gpus) == 1:
        return next(iter(gpus.values())), "the export's only GPU"
    same = [g for g in gpus.values() if g.get("cuDevice") == device]
    if len(same) == 1:
        return same[0], f"{GPU_INFO}.cuDevice (assumes no CUDA_VISIBLE_DEVICES renumbering)"
    return None, "unknown: the export does not map this CUDA device to a GPU"
