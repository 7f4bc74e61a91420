"""Work on many rank files at once: a process pool, results returned in file order.

Per-rank work (parsing, and the per-rank stages: ``analyzers.engine.rank_pool``) is independent and
CPU-bound (JSON decoding holds the GIL), so files go to worker processes, one at a time each;
the parent merges the results in file order, exactly as a sequential run would (names
interned in the same order, the same warnings), so the result is identical whatever ``jobs``
is.

Workers are forked where this process runs a single thread, else started from a fork server
that has imported the parsers once (a threaded parent, e.g. with a progress bar, is never
forked), or spawned where neither exists. A worker's
TracekitError comes back as a ``WorkerError`` (path, cause) and is rebuilt here (a result
may itself be a tuple); any other exception is a bug and propagates.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from analyzers.read.kineto import ParsedTrace, parse_trace
from analyzers.read.nsys import is_nsys, parse_nsys
from tracekit.core.errors import TracekitError

T = TypeVar("T")
J = TypeVar("J")
#: what parsing one file gives: its ranks, or the error that made it unreadable
Outcome = list[ParsedTrace] | TracekitError
#: progress(files done, total, the name of the file just finished or started)
Progress = Callable[[int, int, str], None]
log = logging.getLogger(__name__)
_PRELOAD = [
    "analyzers.engine.file_jobs",
    "analyzers.read.kineto",
    "analyzers.read.nsys",
    "numpy",
    "msgspec",
]


def parse_file(path: Path) -> list[ParsedTrace]:
    """One file's ranks: a Kineto trace holds one, an Nsight Systems export one or more."""
    return parse_nsys(path) if is_nsys(path) else [parse_trace(path)]


@dataclass(frozen=True)
class WorkerError:
    """A TracekitError across a process or Ray boundary (its pickled form would lose them)."""

    path: str | None
    cause: str

    def rebuilt(self) -> TracekitError:
        return TracekitError(self.path, self.cause)


def _worker(fn: Callable[[J], T], job: J) -> T | WorkerError:
    try:
        return fn(job)
    except TracekitError as exc:
        return WorkerError(exc.path, exc.cause)


def default_jobs(files: int) -> int:
    """One worker per core this process may use, never more than there are files."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, files))


def parse_all(
    paths: Sequence[Path], jobs: int | None = None, progress: Progress | None = None
) -> list[Outcome]:
    """Parse ``paths`` with ``jobs`` processes (None: ``default_jobs``); file order kept."""
    return run_all(parse_file, paths, [p.name for p in paths], jobs, progress)


def run_all(
    fn: Callable[[J], T],
    items: Sequence[J],
    labels: Sequence[str],
    jobs: int | None = None,
    progress: Progress | None = None,
) -> list[T | TracekitError]:
    """``fn`` over ``items`` in ``jobs`` processes (None: ``default_jobs``); order kept.

    ``fn`` must be picklable (a module-level function). A TracekitError an item raises
    comes back as its outcome. With one job or one item nothing is started: the items run
    here, in order, and the error of a lone item is raised rather than returned.
    """
    total = len(items)
    jobs = default_jobs(total) if jobs is None else max(1, min(jobs, total))
    if jobs <= 1:
        return _sequential(fn, items, labels, progress)
    outcomes: list[T | TracekitError | None] = [None] * total
    context = _context()
    log.debug("%d item(s) in %d worker processes (%s)", total, jobs, context.get_start_method())
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(_worker, fn, item): i for i, item in enumerate(items)}
        pending: set[Future[T | WorkerError]] = set(futures)
        done_count = 0
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = futures[future]
                    result = future.result()
                    outcomes[index] = (
                        result.rebuilt() if isinstance(result, WorkerError) else result
                    )
                    done_count += 1
                    if progress:
                        progress(done_count, total, labels[index])
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    if progress:
        progress(total, total, "")
    return [o for o in outcomes if o is not None]


def _sequential(
    fn: Callable[[J], T], items: Sequence[J], labels: Sequence[str], progress: Progress | None
) -> list[T | TracekitError]:
    outcomes: list[T | TracekitError] = []
    for done, item in enumerate(items):
        if progress:
            progress(done, len(items), labels[done])
        try:
            outcomes.append(fn(item))
        except TracekitError as exc:
            if len(items) == 1:
                raise
            outcomes.append(exc)
    if progress:
        progress(len(items), len(items), "")
    return outcomes


def _context() -> multiprocessing.context.BaseContext:
    """``fork`` where this process runs one thread (cheap; nothing re-imported, so scripts,
    notebooks and stdin work unguarded); else a fork server (never fork a threaded process);
    spawn where neither exists."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")
