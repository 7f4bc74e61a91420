"""Analyse each rank where it is parsed: per-rank stages in worker processes (or Ray tasks).

A worker gets one trace file and what the run directory says (``RankJob``), parses it,
runs the per-rank stages and sends back each rank's digest (``analyzers.rank.digest``): the
events never leave the worker, so the parent holds a few kilobytes per rank whatever the
traces' size. Two things depend on every rank, and are settled in the parent afterwards:

* **identities**: ranks that name themselves nowhere are numbered in file order, and
  duplicates are an error (``loader.settle_identities``); the stages read only a rank's dp
  and pp, which settling never changes, so a digest takes its final identity as it is;
* **device peaks**: the run is judged against the first device the spec table knows, in rank
  order. A worker judges its rank by its own devices; where that differs from the run's
  choice (a rank without device names, mixed devices), its file is analysed again with the
  run's peaks;
* **the window**: every rank is analysed over the run's common window (``analyzers.run.window``),
  known once every rank has said over which span it was profiled. A worker analyses its rank
  over its own window; a file whose ranks' own windows differ from the common one is analysed
  again over it (with the run's peaks). In a multi-rank run that is usually every file but
  the ones that set the common window's ends.

Every rank therefore ends exactly as the sequential ``analyze_trace`` leaves it, and the
merged Analysis is the same (tested equal).

``run_ranks`` drives it with any executor: a process pool here, Ray tasks in
``analyzers.engine.ray_executor``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec

from analyzers.engine.pipeline import RANK_STAGES, RankState, Stage, rank_digest, run_stages
from analyzers.engine.process_pool import Progress, parse_file, run_all
from analyzers.engine.stage_log import (
    FileStats,
    family_counts,
    log_file,
    log_peaks,
    log_rank,
    log_window,
    timed,
)
from analyzers.rank.digest import RankDigest, RunInfo
from analyzers.read.discover import Discovered, TraceFile, discover
from analyzers.read.loader import missing_ranks, rank_trace, settle_identities
from analyzers.read.run_facts import RunFacts, device_spec, manifest_facts
from analyzers.run.assemble import merge
from analyzers.run.window import Window, common_window
from tracekit.core.analysis import Analysis
from tracekit.core.errors import TracekitError
from tracekit.core.hardware import DeviceSpec
from tracekit.core.trace_model import NameTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankJob:
    """One trace file to analyse, with what the run directory says."""

    file: TraceFile
    facts: RunFacts  # without device peaks unless ``fixed_spec``
    manifest: dict[str, Any] | None
    stages: tuple[Stage, ...] = RANK_STAGES
    fixed_spec: bool = False  # judge against ``facts.spec`` rather than the rank's devices
    window: Window | None = None  # the run's common window (None: each rank's own)


@dataclass(frozen=True)
class RankOut:
    """One rank of a file, analysed, with what the parent settles across ranks."""

    digest: RankDigest
    has_device: bool
    device_keys: tuple[str, ...]  # what the spec table is looked up by (RankTrace)
    spec: DeviceSpec | None  # the peaks its stages used
    spec_note: str
    stats: FileStats | None = None  # what reading and analysing it took (for -v)


#: runs ``analyze_file`` over jobs, in job order: a file's ranks, or why it is unreadable
Executor = Callable[[Sequence[RankJob], Progress | None], list[list[RankOut] | TracekitError]]


def analyze_file(job: RankJob) -> list[RankOut]:
    """Parse one file and run the per-rank stages on each of its ranks."""
    start = time.perf_counter()
    parsed = parse_file(job.file.path)
    parse_s = time.perf_counter() - start
    size = job.file.path.stat().st_size
    names = NameTable()
    outs = []
    for one in parsed:
        rank = rank_trace(job.file, one, names, alone=len(parsed) == 1)
        facts = job.facts
        if not job.fixed_spec:
            spec, note = device_spec(rank.has_device, rank.device_keys, job.manifest)
            facts = replace(facts, spec=spec, spec_note=note)
        state = RankState(rank, names, facts=facts, window=job.window)
        timings: list[tuple[str, float]] = []
        state = run_stages(state, job.stages, timings)
        stats = FileStats(
            job.file.path.name,
            size,
            parse_s,
            len(rank.events),
            tuple(timings),
            family_counts(state.family),
        )
        outs.append(
            RankOut(
                rank_digest(state, facts),
                rank.has_device,
                rank.device_keys,
                facts.spec,
                facts.spec_note,
                stats,
            )
        )
    return outs


def pool_executor(jobs: int | None) -> Executor:
    """Worker processes (None: one per core, capped by the files; 1: this process)."""

    def run(
        items: Sequence[RankJob], progress: Progress | None
    ) -> list[list[RankOut] | TracekitError]:
        return run_all(analyze_file, items, [j.file.path.name for j in items], jobs, progress)

    return run


def analyze_pooled(
    path: str | Path,
    progress: Progress | None = None,
    stages: Sequence[Stage] = RANK_STAGES,
    jobs: int | None = None,
) -> Analysis:
    """``analyze`` with each rank's stages in a process pool of ``jobs`` workers."""
    return run_ranks(discover(Path(path)), pool_executor(jobs), progress, stages)


def run_ranks(
    found: Discovered,
    execute: Executor,
    progress: Progress | None = None,
    stages: Sequence[Stage] = RANK_STAGES,
    facts: RunFacts | None = None,
    manifest: dict[str, Any] | None = None,
) -> Analysis:
    """Analyse every discovered file with ``execute`` and merge the ranks into one run.

    ``facts``, ``manifest``: what the run directory says, where it was read elsewhere
    (another node)."""
    if manifest is None and found.manifest is not None:
        manifest = msgspec.to_builtins(found.manifest)
    run_dir = str(found.run_dir) if found.run_dir else None
    facts = facts if facts is not None else manifest_facts(run_dir, manifest)
    jobs = [RankJob(f, facts, manifest, tuple(stages)) for f in found.files]
    log.info("analysing %d trace file(s) from %s", len(jobs), found.source)
    start = time.perf_counter()
    outcomes = execute(jobs, progress)
    _log_outcomes(outcomes)
    log.info("parsed and analysed every file: %.2f s", time.perf_counter() - start)
    failures = [o for o in outcomes if isinstance(o, TracekitError)]
    by_file = [(i, o) for i, o in enumerate(outcomes) if not isinstance(o, TracekitError)]
    if not by_file:
        raise failures[0]
    ranks = [(i, out) for i, outs in by_file for out in outs]
    ids, order = settle_identities([(o.digest.identity, o.digest.result.path) for _, o in ranks])
    spec, note = device_spec(
        any(ranks[k][1].has_device for k in order),
        [n for k in order for n in ranks[k][1].device_keys],
        manifest,
    )
    facts = replace(facts, spec=spec, spec_note=note)
    log_peaks(spec.name if spec else None, spec.source if spec else None, note)
    window = common_window([_own(o) for _, o in ranks])
    log_window(window, len(ranks))
    redo = sorted(
        {
            i
            for i, o in ranks
            if (o.spec, o.spec_note) != (spec, note) or (window and _own(o) != window)
        }
    )
    if redo:
        log.debug(
            "re-running %d file(s) with the run's peaks / common window: %s",
            len(redo),
            ", ".join(jobs[i].file.path.name for i in redo),
        )
        start = time.perf_counter()
        again = execute(
            [replace(jobs[i], facts=facts, fixed_spec=True, window=window) for i in redo], None
        )
        _log_outcomes(again, rerun=True)
        log.info(
            "re-ran %d file(s) over the run's window and peaks: %.2f s",
            len(redo),
            time.perf_counter() - start,
        )
        fresh = dict(zip(redo, again, strict=True))
        ranks = [
            (i, out)
            for i, outs in by_file
            for out in _outs(fresh.get(i, outs))  # a file that read once reads again
        ]
    digests = [ranks[k][1].digest.with_identity(ids[k]) for k in order]
    warnings = list(found.notes)
    warnings += [f"rank trace unreadable, analysed without it: {exc}" for exc in failures]
    warnings += missing_ranks(ids)
    info = RunInfo(str(found.source), run_dir, manifest, tuple(warnings))
    with timed("run-level reports"):
        analysis = merge(info, digests, facts)
    log.info("regime: %s", analysis.regime.name)
    return analysis


def _log_outcomes(outcomes: Sequence[list[RankOut] | TracekitError], rerun: bool = False) -> None:
    """What each file took (the figures its worker measured), logged here in the parent.

    An unreadable file is not logged: the Analysis's warnings say so, once."""
    for outcome in outcomes:
        if isinstance(outcome, TracekitError):
            log.debug("unreadable: %s", outcome)
            continue
        for k, out in enumerate(outcome):
            if out.stats is None:
                continue
            if k == 0:
                log_file(out.stats, rerun)
            log_rank(out.digest.result.label, out.stats, rerun)


def _own(out: RankOut) -> Window:
    """The span a rank was profiled over (its digest's own window)."""
    r = out.digest.result
    start, length = r.own_window_start_ns or 0, r.own_window_ns or 0
    return start, start + length


def _outs(outcome: list[RankOut] | TracekitError) -> list[RankOut]:
    if isinstance(outcome, TracekitError):
        raise outcome
    return outcome
