"""The one driver: every analysis, whatever runs it (this process, a process pool, Ray).

1. **read** (``file_jobs.read_file``, one task per file): parse each file once and describe its
   ranks (identity, devices, own window); the parsed ranks wait in a spill file for round 2;
2. **settle** (``settle.settle``, here): identities, the device peaks and the window (the
   common window, narrowed to the steady state unless the whole window is asked for), from
   every rank's description, before any stage runs;
3. **per rank** (``file_jobs.analyze_file``, one task per file): the per-rank stages
   (``analyzers.rank.rank_stages``) under what was settled; each rank comes back as a digest;
4. **run** (``analyzers.run.run_stages``, here): the run-level stages over the digests, in rank
   order, and the Analysis.

A run of one file settles from that file alone: rounds 1 and 3 are one task and nothing is
spilled. An executor runs a worker function over jobs in job order (``Executor``); the
process pool's is ``pool_executor``, Ray's ``analyzers.engine.ray_executor``. A loaded Trace
(``analyze_trace``) goes through the same settling and stages in this process.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from analyzers.engine.file_jobs import (
    FileJob,
    RankOut,
    analyze_file,
    analyze_ranks,
    header,
    read_and_analyze,
    read_file,
)
from analyzers.engine.process_pool import Progress, run_all
from analyzers.engine.settle import FileRead, SettledRun, settle
from analyzers.engine.stage_log import FileStats, log_file, log_peaks, log_rank, log_window, timed
from analyzers.rank.digest import RankDigest, RunInfo
from analyzers.rank.op_table import OpTable
from analyzers.rank.rank_stages import RANK_STAGES, Stage
from analyzers.read.discover import Discovered, discover
from analyzers.read.loader import missing_ranks
from analyzers.read.run_facts import RunFacts, manifest_facts
from analyzers.run.run_stages import RUN_STAGES, RunStage, RunState, analysis_of, run_stages
from analyzers.run.steady_state import Asked
from tracekit.core.analysis import Analysis
from tracekit.core.errors import TracekitError
from tracekit.core.partition import RankPartition
from tracekit.core.trace_model import Trace

log = logging.getLogger(__name__)
T = TypeVar("T")

#: runs a worker function over file jobs, in job order: each job's result, or why its file is
#: unreadable (a lone job's error may be raised instead)
Executor = Callable[[Callable[[FileJob], Any], Sequence[FileJob], "Progress | None"], list[Any]]


def pool_executor(jobs: int | None) -> Executor:
    """Worker processes (None: one per core, capped by the files; 1: this process)."""

    def run(
        fn: Callable[[FileJob], T], items: Sequence[FileJob], progress: Progress | None
    ) -> list[T | TracekitError]:
        return run_all(fn, items, [j.file.path.name for j in items], jobs, progress)

    return run


def analyze(
    path: str | Path,
    progress: Progress | None = None,
    stages: Sequence[Stage] = RANK_STAGES,
    jobs: int | None = None,
    whole_window: bool = False,
) -> Analysis:
    """Analyse PATH (a trace file, a folder of rank traces, a run directory); ``jobs``: ranks
    analysed at once in worker processes (None: one per core, capped by the files; 1: here).
    Whatever it is, the Analysis is the same. The ranks are analysed over the run's steady
    window (``analyzers.run.steady_state``), or over the whole one with ``whole_window``."""
    found, execute = discover(Path(path)), pool_executor(jobs)
    return analyze_found(found, execute, progress, stages, whole_window=whole_window)[0]


def analyze_found(
    found: Discovered,
    execute: Executor,
    progress: Progress | None = None,
    stages: Sequence[Stage] = RANK_STAGES,
    facts: RunFacts | None = None,
    manifest: dict[str, Any] | None = None,
    keep_partitions: bool = False,
    run_level: Sequence[RunStage] = RUN_STAGES,
    keep_ops: bool = False,
    whole_window: bool = False,
) -> tuple[Analysis, list[RankDigest]]:
    """Analyse every discovered file with ``execute``: the Analysis, and each rank's digest in
    rank order, with its partition where ``keep_partitions`` and its op table where
    ``keep_ops``. ``facts``, ``manifest``: what the run directory says, where it was read
    elsewhere (another node)."""
    if manifest is None and found.manifest is not None:
        manifest = msgspec.to_builtins(found.manifest)
    run_dir = str(found.run_dir) if found.run_dir else None
    facts = facts if facts is not None else manifest_facts(run_dir, manifest)
    jobs = [
        FileJob(
            f,
            facts,
            manifest,
            tuple(stages),
            index=i,
            keep_partitions=keep_partitions,
            keep_ops=keep_ops,
            asked=_asked(whole_window),
        )
        for i, f in enumerate(found.files)
    ]
    log.info("analysing %d trace file(s) from %s", len(jobs), found.source)
    start = time.perf_counter()
    if len(jobs) == 1:
        outcome = _one(execute(read_and_analyze, jobs, progress))
        read, run, outs = outcome
        reads: list[FileRead | None] = [read]
        by_file: list[list[RankOut] | None] = [outs]
        failures: list[TracekitError] = []
    else:
        reads, run, by_file, failures = _two_rounds(
            jobs, execute, progress, facts, manifest, _asked(whole_window)
        )
    log.info("parsed and analysed every file: %.2f s", time.perf_counter() - start)
    for read, outs in zip(reads, by_file, strict=True):
        _log_file(read, outs)
    digests = [_outs(by_file[i])[k].digest for i, k in run.order]
    warnings = list(found.notes)
    warnings += [f"rank trace unreadable, analysed without it: {exc}" for exc in failures]
    warnings += missing_ranks(run.identities)
    info = RunInfo(str(found.source), run_dir, manifest, tuple(warnings))
    analysis = run_level_analysis(info, digests, run.facts, run_level)
    return msgspec.structs.replace(analysis, steady=run.steady), digests


def analyze_ops(
    path: str | Path,
    jobs: int | None = None,
    progress: Progress | None = None,
    whole_window: bool = False,
) -> tuple[Analysis, tuple[OpTable | None, ...]]:
    """``analyze`` with each rank's every op and kernel by name and shape
    (``analyzers.rank.op_table``), in rank order: what a kernel diff compares."""
    found = discover(Path(path))
    analysis, digests = analyze_found(
        found, pool_executor(jobs), progress, keep_ops=True, whole_window=whole_window
    )
    return analysis, tuple(d.ops for d in digests)


def analyze_trace(
    trace: Trace,
    stages: Sequence[Stage] = RANK_STAGES,
    facts: RunFacts | None = None,
    keep_partitions: bool = False,
    whole_window: bool = False,
) -> Analysis:
    """A loaded Trace (``tracekit.load``) analysed here, settled and staged as ``analyze`` does."""
    return analyze_loaded(trace, stages, facts, keep_partitions, whole_window)[0]


def analyze_loaded(
    trace: Trace,
    stages: Sequence[Stage] = RANK_STAGES,
    facts: RunFacts | None = None,
    keep_partitions: bool = False,
    whole_window: bool = False,
) -> tuple[Analysis, tuple[RankPartition | None, ...]]:
    """``analyze_trace`` with each rank's partition where ``keep_partitions``."""
    facts = facts if facts is not None else manifest_facts(trace.run_dir, trace.manifest)
    reads: list[FileRead | None] = [
        FileRead((header(r, trace.names),), FileStats(Path(r.path).name, 0, 0.0, len(r.events)))
        for r in trace.ranks
    ]
    run = settle(facts, trace.manifest, reads, _asked(whole_window))
    _log_settled(run)
    outs = []
    for rank, read, settled in zip(trace.ranks, reads, run.files, strict=True):
        assert read is not None and settled is not None
        (out,) = analyze_ranks(settled, [rank], trace.names, read.stats, stages, keep_partitions)
        log_rank(out.digest.result.label, out.stats)
        outs.append(out)
    digests = [outs[i].digest for i, _ in run.order]
    info = RunInfo.of(trace)
    analysis = run_level_analysis(info, digests, run.facts)
    analysis = msgspec.structs.replace(analysis, steady=run.steady)
    return analysis, tuple(d.partition for d in digests)


def settle_loaded(
    trace: Trace, facts: RunFacts | None = None, whole_window: bool = False
) -> SettledRun:
    """What ``analyze_trace`` settles for a loaded Trace: each rank as a file of its own."""
    facts = facts if facts is not None else manifest_facts(trace.run_dir, trace.manifest)
    reads: list[FileRead | None] = [
        FileRead((header(r, trace.names),), FileStats(Path(r.path).name, 0, 0.0, len(r.events)))
        for r in trace.ranks
    ]
    return settle(facts, trace.manifest, reads, _asked(whole_window))


def run_level_analysis(
    info: RunInfo,
    digests: Sequence[RankDigest],
    facts: RunFacts,
    stages: Sequence[RunStage] = RUN_STAGES,
) -> Analysis:
    """The run-level stages over the ranks' digests (in rank order), and the Analysis."""
    with timed("run-level reports"):
        analysis = analysis_of(run_stages(RunState(info, tuple(digests), facts), stages))
    log.info("regime: %s", analysis.regime.name)
    return analysis


def _two_rounds(
    jobs: list[FileJob],
    execute: Executor,
    progress: Progress | None,
    facts: RunFacts,
    manifest: dict[str, Any] | None,
    asked: Asked = "steady",
) -> tuple[list[FileRead | None], SettledRun, list[list[RankOut] | None], list[TracekitError]]:
    try:
        spill = tempfile.mkdtemp(prefix="tracekit-ranks-")
    except OSError as exc:
        raise TracekitError(
            tempfile.gettempdir(),
            f"cannot make a folder for the parsed ranks ({exc.strerror or exc}); "
            "point TMPDIR at a writable folder with room for them",
        ) from None
    total = 2 * len(jobs)
    try:
        jobs = [replace(j, spill=spill) for j in jobs]
        first = execute(read_file, jobs, _offset(progress, 0, total))
        failures = [o for o in first if isinstance(o, TracekitError)]
        reads = [None if isinstance(o, TracekitError) else o for o in first]
        if not any(reads):
            raise failures[0]
        spilled = next((r.spill_error for r in reads if r and r.spill_error), None)
        if spilled:
            raise TracekitError(
                spill,
                f"cannot keep the parsed ranks between the two rounds ({spilled}); "
                "point TMPDIR at a folder with room for them",
            )
        run = settle(facts, manifest, reads, asked)
        _log_settled(run)
        todo = [
            (i, replace(j, settled=s))
            for i, (j, s) in enumerate(zip(jobs, run.files, strict=True))
            if s
        ]
        total = len(jobs) + len(todo)  # the unreadable files have no round 2
        second = execute(analyze_file, [j for _, j in todo], _offset(progress, len(jobs), total))
        by_file: list[list[RankOut] | None] = [None] * len(jobs)
        for (i, _), outs in zip(todo, second, strict=True):
            if isinstance(outs, TracekitError):
                raise outs  # it read in round 1: only a bug or a vanished spill gets here
            by_file[i] = outs
        return reads, run, by_file, failures
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _asked(whole_window: bool) -> Asked:
    return "whole" if whole_window else "steady"


def _offset(progress: Progress | None, done: int, total: int) -> Progress | None:
    """One bar over both rounds: round 1's files, then round 2's."""
    if progress is None:
        return None
    return lambda n, _total, label: progress(done + n, total, label)


def _outs(outs: list[RankOut] | None) -> list[RankOut]:
    if outs is None:
        raise ValueError("a settled rank's file has no outcome")
    return outs


def _one(outcomes: list[Any]) -> Any:
    (outcome,) = outcomes
    if isinstance(outcome, TracekitError):
        raise outcome
    return outcome


def _log_settled(run: SettledRun) -> None:
    spec = run.facts.spec
    log_peaks(spec.name if spec else None, spec.source if spec else None, run.facts.spec_note)
    log_window(run.window, len(run.identities))


def _log_file(read: FileRead | None, outs: list[RankOut] | None) -> None:
    """What each file took (the figures its worker measured), logged here in the parent. An
    unreadable file is not logged: the Analysis's warnings say so, once."""
    if read is None or outs is None:
        return
    log_file(read.stats)
    for out in outs:
        log_rank(out.digest.result.label, out.stats)
