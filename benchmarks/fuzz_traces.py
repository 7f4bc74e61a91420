"""Fuzz `tracekit analyze` with mutations of every real trace in ../shared/traces.

Usage (from the repo root):

    .venv/bin/python benchmarks/fuzz_traces.py                      # 5000 mutations, all cores
    .venv/bin/python benchmarks/fuzz_traces.py --mutations 500 --seed 7 --jobs 2
    .venv/bin/python benchmarks/fuzz_traces.py --keep-failures /tmp/fuzz-failures --show 10

The traces are found as the tests find them (``tests/real_traces.py``: every ``*.json.gz``,
Kineto ``*.json`` and ``*.sqlite`` outside ``capture_traces/``). Each is reduced once (a
Kineto trace to ``--events`` events: its first half, then an even sample of the rest; an
Nsight Systems export to ``--rows`` rows per table: ``tests/real_traces.reduced_*``) so
that one mutation analyses in tens of milliseconds. Mutation i goes to trace i mod T
(round-robin) with its own seed (``--seed`` and i), so any outcome is reproduced by its
(trace, mutation) pair. The kinds (``tests/fuzz_mutations.py``):

  Kineto  truncate the JSON or its gzip at a random byte; overwrite or splice random bytes;
          delete, duplicate or shuffle events; change a field's type (int, str, float, null,
          list, object, bool); drop required keys; huge, negative, NaN/Infinity numbers;
          wrong nesting (an event in a list, args as a list, traceEvents an object, ...);
          top-level keys of another type; semantic swaps (categories, names the stages
          match, phases, linking ids, collective args, shapes, overlapping times)
  nsys    truncate the file; overwrite bytes; cells of another type; huge/negative times;
          rows deleted or duplicated; a column or a table dropped

A rank file of a folder that holds several (``hta_2rank``) is, one time in three, analysed
as its run: the mutated rank next to the other ranks' reduced files, so that the run-level
stages (cross-rank collectives, the common window) meet broken ranks too.

Each mutated file is written to a temporary folder and analysed through the product entry
points, as the CLI does: ``tracekit.analyze(path, jobs=1)``, then the JSON and the console
renderers. Outcomes: ok (a report whose buckets sum to each rank's window), domain error (a
one-line ``TracekitError`` naming the file: bad input, said so), internal error (anything
else, a broken invariant, or a mutation running past ``--timeout`` s: a bug). Prints a table
per trace and per kind and the first ``--show`` internal errors with their tracebacks.
Exit 1 if any internal error, 2 if no trace is found, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.conftest import SHARED_TRACES  # noqa: E402
from tests.fuzz_mutations import file_name, mutate_kineto, mutate_nsys  # noqa: E402
from tests.real_traces import label, reduced_doc, reduced_sqlite, trace_files  # noqa: E402

OK, DOMAIN, INTERNAL = "ok", "domain error", "internal error"
Result = tuple[int, int, str, str, str, bytes | None]

# -- the worker --------------------------------------------------------------------------------


@dataclass
class _Worker:
    bases: list[Path] = field(default_factory=list)  # per trace: its reduced file
    siblings: list[list[int]] = field(default_factory=list)  # the other ranks of its run
    names: list[str] = field(default_factory=list)  # its file name (may name the rank)
    tmp: Path = Path()


_W = _Worker()


def _init(bases: list[Path], siblings: list[list[int]], names: list[str]) -> None:
    _W.bases, _W.siblings, _W.names = bases, siblings, names
    _W.tmp = Path(tempfile.mkdtemp(prefix="tracekit-fuzz-"))


def _alarm(signum: int, frame: Any) -> None:
    raise TimeoutError("the analysis ran past --timeout")


def _write(index: int, rng: random.Random) -> tuple[str, Path, Path]:
    """Mutate trace ``index``: (kind, the mutated file, what to analyse: it or its run)."""
    folder = _W.tmp / "run"
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    as_run = bool(_W.siblings[index]) and rng.random() < 1 / 3
    base = _W.bases[index].read_bytes()
    if _W.bases[index].suffix == ".sqlite":
        path = folder / "t.sqlite"
        kind = mutate_nsys(rng, base, path)
    else:
        kind, data = mutate_kineto(rng, base)
        name = _W.names[index].split(".")[0] + file_name(data)[1:] if as_run else file_name(data)
        path = folder / name
        path.write_bytes(data)
    for other in _W.siblings[index] if as_run else []:
        (folder / (_W.names[other].split(".")[0] + ".json")).write_bytes(
            _W.bases[other].read_bytes()
        )
    return (kind + " (run)" if as_run else kind), path, (folder if as_run else path)


def run_one(task: tuple[int, int, int, float]) -> Result:
    """(trace, mutation, kind, outcome, detail, the mutated file where internal)."""
    index, mutation, seed, timeout = task
    import tracekit
    from tracekit.core.errors import TracekitError
    from tracekit.render.console import render as render_console
    from tracekit.render.json import render as render_json

    kind, path, target = _write(index, random.Random(seed * 1_000_003 + mutation))
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        analysis = tracekit.analyze(target, jobs=1)
        for rank in analysis.ranks:
            if sum(rank.buckets.values()) != rank.window_ns:
                raise AssertionError(f"{rank.label}: buckets do not sum to the window")
        render_json(analysis)  # the schema is validated on write
        render_console(analysis, width=120, colour=False)
        outcome, detail = OK, ""
    except TracekitError as exc:
        message = str(exc)
        good = str(target.parent) in message and "\n" not in message
        cause = re.sub(r"\d+", "N", message.split(": ", 1)[-1])[:90]  # the file and figures out
        outcome, detail = (DOMAIN, cause) if good else (INTERNAL, f"bad domain error: {message!r}")
    except Exception:  # any other exception is what the fuzzer looks for
        outcome, detail = INTERNAL, traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    kept = path.read_bytes() if outcome == INTERNAL else None
    return index, mutation, kind, outcome, detail, kept


# -- the driver --------------------------------------------------------------------------------


def prepare(traces: list[Path], work: Path, events: int, rows: int) -> list[Path]:
    """The reduced base of each trace, written once into ``work``."""
    bases = []
    for i, trace in enumerate(traces):
        if trace.suffix == ".sqlite":
            bases.append(reduced_sqlite(trace, work / f"{i}.sqlite", rows))
        else:
            out = work / f"{i}.json"
            out.write_bytes(json.dumps(reduced_doc(trace, events)).encode())
            bases.append(out)
    return bases


def siblings(traces: list[Path]) -> list[list[int]]:
    """Per trace: the other Kineto rank files in its folder (none for a lone file)."""
    kineto = [i for i, t in enumerate(traces) if t.suffix != ".sqlite"]
    return [
        [j for j in kineto if j != i and traces[j].parent == t.parent] if i in kineto else []
        for i, t in enumerate(traces)
    ]


def report(
    console: Console, names: list[str], results: list[Any], show: int, top: int, wall: float
) -> int:
    per_trace: dict[str, Counter[str]] = {n: Counter() for n in names}
    per_kind: dict[str, Counter[str]] = {}
    for index, _, kind, outcome, _, _ in results:
        per_trace[names[index]][outcome] += 1
        per_kind.setdefault(kind, Counter())[outcome] += 1
    total: Counter[str] = sum(per_trace.values(), Counter())
    for title, rows in (("trace", per_trace), ("mutation kind", per_kind)):
        table = Table(title=f"outcomes per {title}")
        for column in (title, "mutations", OK, DOMAIN, INTERNAL):
            table.add_column(column, justify="left" if column == title else "right")
        for name, c in sorted(rows.items()):
            table.add_row(name, str(c.total()), str(c[OK]), str(c[DOMAIN]), str(c[INTERNAL]))
        table.add_row("total", str(total.total()), *(str(total[k]) for k in (OK, DOMAIN, INTERNAL)))
        console.print(table)
    causes = Counter((r[2].removesuffix(" (run)"), r[4]) for r in results if r[3] == DOMAIN)
    table = Table(title=f"the {top} most common domain errors")
    for column in ("mutation kind", "count", "cause (numbers as N)"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for (kind, cause), n in causes.most_common(top):
        table.add_row(kind, str(n), cause)
    console.print(table)
    internal = [r for r in results if r[3] == INTERNAL]
    for index, mutation, kind, _, detail, _ in internal[:show]:
        console.print(f"[bold red]internal error[/] {names[index]} mutation {mutation} ({kind}):")
        console.print(detail, markup=False, highlight=False)
    console.print(
        f"{total.total()} mutations in {wall:.1f} s: {total[OK]} ok, {total[DOMAIN]} domain "
        f"errors, {total[INTERNAL]} internal errors"
    )
    return 1 if internal else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutations", type=int, default=5000, help="mutations in all (round-robin)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--events", type=int, default=1000, help="events kept of a Kineto trace")
    ap.add_argument("--rows", type=int, default=300, help="rows kept per table of an export")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per analysis")
    ap.add_argument("--show", type=int, default=5, help="internal errors printed in full")
    ap.add_argument("--causes", type=int, default=15, help="domain error causes listed")
    ap.add_argument("--traces", type=Path, default=SHARED_TRACES, help="the folder of traces")
    ap.add_argument("--keep-failures", type=Path, help="save the inputs of internal errors here")
    args = ap.parse_args()
    console = Console(width=max(Console().width, 110))
    traces = trace_files(args.traces)
    if not traces:
        console.print(f"no traces under {args.traces}")
        return 2
    names = [label(t, args.traces) for t in traces]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tracekit-fuzz-bases-") as work:
        bases = prepare(traces, Path(work), args.events, args.rows)
        tasks = [(i % len(bases), i, args.seed, args.timeout) for i in range(args.mutations)]
        init = (bases, siblings(traces), [t.name for t in traces])
        with ProcessPoolExecutor(args.jobs, initializer=_init, initargs=init) as pool:
            results = list(pool.map(run_one, tasks, chunksize=16))
    wall = time.perf_counter() - start
    if args.keep_failures:
        args.keep_failures.mkdir(parents=True, exist_ok=True)
        for index, mutation, _, outcome, detail, kept in results:
            if outcome == INTERNAL and kept is not None:
                stem = f"{names[index].replace('/', '__')}.m{mutation}"
                suffix = ".sqlite" if traces[index].suffix == ".sqlite" else file_name(kept)[1:]
                (args.keep_failures / (stem + suffix)).write_bytes(kept)
                (args.keep_failures / (stem + ".txt")).write_text(detail)
    return report(console, names, results, args.show, args.causes, wall)


if __name__ == "__main__":
    sys.exit(main())
