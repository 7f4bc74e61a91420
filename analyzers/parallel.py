"""Parse many rank files at once: a process pool, results returned in file order.

Per-rank parsing is independent and CPU-bound (JSON decoding holds the GIL), so ranks go
to worker processes, each parsing one file at a time; the parent merges the results in
file order, exactly as a sequential run would (names interned in the same order, the same
warnings), so the Trace, and the Analysis built from it, are identical whatever ``jobs`` is.

Workers are forked where this process runs a single thread, else started from a fork server
that has imported the parsers once (a threaded parent, e.g. with a progress bar, is never
forked), or spawned where neither exists. A worker's
TracekitError comes back as (path, cause) and is rebuilt here; any other exception is a bug
and propagates.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from analyzers.kineto import ParsedTrace, parse_trace
from analyzers.nsys import is_nsys, parse_nsys
from tracekit.errors import TracekitError

#: what parsing one file gives: its ranks, or the error that made it unreadable
Outcome = list[ParsedTrace] | TracekitError
#: progress(files done, total, the name of the file just finished or started)
Progress = Callable[[int, int, str], None]
_PRELOAD = ["analyzers.kineto", "analyzers.nsys", "numpy", "msgspec"]


def parse_file(path: Path) -> list[ParsedTrace]:
    """One file's ranks: a Kineto trace holds one, an Nsight Systems export one or more."""
    return parse_nsys(path) if is_nsys(path) else [parse_trace(path)]


def _worker(path: str) -> list[ParsedTrace] | tuple[str | None, str]:
    try:
        return parse_file(Path(path))
    except TracekitError as exc:  # its pickled form would lose (path, cause)
        return exc.path, exc.cause


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
    """Parse ``paths`` with ``jobs`` processes (None: ``default_jobs``); file order kept.

    With one job or one file nothing is started: the files are parsed here, in order, and
    the error of a lone file is raised rather than returned.
    """
    total = len(paths)
    jobs = default_jobs(total) if jobs is None else max(1, min(jobs, total))
    if jobs <= 1:
        return _sequential(paths, progress)
    outcomes: list[Outcome | None] = [None] * total
    with ProcessPoolExecutor(max_workers=jobs, mp_context=_context()) as pool:
        futures = {pool.submit(_worker, str(p)): i for i, p in enumerate(paths)}
        pending: set[Future[list[ParsedTrace] | tuple[str | None, str]]] = set(futures)
        done_count = 0
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = futures[future]
                    result = future.result()
                    outcomes[index] = (
                        TracekitError(*result) if isinstance(result, tuple) else result
                    )
                    done_count += 1
                    if progress:
                        progress(done_count, total, paths[index].name)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    if progress:
        progress(total, total, "")
    return [o for o in outcomes if o is not None]


def _sequential(paths: Sequence[Path], progress: Progress | None) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for done, path in enumerate(paths):
        if progress:
            progress(done, len(paths), path.name)
        try:
            outcomes.append(parse_file(path))
        except TracekitError as exc:
            if len(paths) == 1:
                raise
            outcomes.append(exc)
    if progress:
        progress(len(paths), len(paths), "")
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
