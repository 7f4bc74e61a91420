"""The stage loop: per-rank stages in order, the invariant checked after each, then the run.

A stage is a plain function ``RankState -> RankState`` that returns a new state and never
mutates its input. Callers choose the stage list; ``run_stages`` is the one loop that runs it.
Every rank of a run is analysed over the run's common window (``analyzers.run.window``), which
``rank_states`` sets on each state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from analyzers.rank.attribute import Attribution, attribute, own_window
from analyzers.rank.classify import (
    classify_events,
    route_moe_host_ops,
)
from analyzers.rank.digest import RankDigest, RunInfo, digest
from analyzers.rank.kv_stall import kv_stall
from analyzers.rank.rank_result import rank_result
from analyzers.rank.roofline_stage import roofline, step_windows
from analyzers.rank.step_annotations import StepRow, find_steps
from analyzers.read.loader import Progress
from analyzers.read.run_facts import RunFacts, run_facts
from analyzers.run.assemble import merge
from analyzers.run.window import Window, common_window
from tracekit.core.analysis import (
    Analysis,
    RankKv,
    RankRoofline,
)
from tracekit.core.buckets import BUCKETS
from tracekit.core.errors import TracekitError
from tracekit.core.trace_model import NameTable, RankTrace, Trace


@dataclass(frozen=True)
class RankState:
    trace: RankTrace
    names: NameTable
    family: np.ndarray | None = None
    attribution: Attribution | None = None
    steps: tuple[StepRow, ...] | None = None
    facts: RunFacts | None = None  # the run directory's model, layout, steps/ and peaks
    roofline: RankRoofline | None = None
    kv: RankKv | None = None
    window: Window | None = None  # the run's common window (None: the rank's own)


Stage = Callable[[RankState], RankState]


def classify_stage(state: RankState) -> RankState:
    events, names = state.trace.events, state.names
    family = route_moe_host_ops(events, names, classify_events(events, names))
    return replace(state, family=family)


def attribute_stage(state: RankState) -> RankState:
    if state.family is None:
        raise ValueError("attribute_stage needs classify_stage first")
    att = attribute(state.trace.events, state.family, state.names, state.window)
    return replace(state, attribution=att)


def steps_stage(state: RankState) -> RankState:
    """The rank's engine steps; where it is analysed over a window other than its own (the
    run's common window), the steps that overlap that window."""
    steps = find_steps(state.trace.events, state.names)
    att = state.attribution
    own = None if att is None else (att.own_start_ns, att.own_ns)
    if att is not None and steps and (att.window_start_ns, att.window_ns) != own:
        starts, ends = step_windows(state.trace.events, steps, att.device)
        lo, hi = att.window_start_ns, att.window_start_ns + att.window_ns
        steps = [s for s, a, z in zip(steps, starts, ends, strict=True) if a < hi and z > lo]
    return replace(state, steps=tuple(steps))


def roofline_stage(state: RankState) -> RankState:
    """Compute vs HBM inside engine steps from the model config (no-op without one)."""
    if state.facts is None or state.attribution is None or state.steps is None:
        return state
    att, result = roofline(
        state.attribution, state.trace.events, state.steps, state.facts, state.trace.id
    )
    return replace(state, attribution=att, roofline=result)


def kv_stall_stage(state: RankState) -> RankState:
    """KV-cache stalls from steps/ (no-op without step records)."""
    if state.facts is None or state.attribution is None or state.steps is None:
        return state
    att, result = kv_stall(
        state.attribution, state.trace.events, state.steps, state.facts, state.trace.id
    )
    return replace(state, attribution=att, kv=result)


RANK_STAGES: tuple[Stage, ...] = (
    classify_stage,
    attribute_stage,
    steps_stage,
    roofline_stage,
    kv_stall_stage,
)


def check_state(state: RankState, stage: Stage) -> None:
    """The invariant, after every stage: buckets partition the window exactly."""
    att = state.attribution
    if att is None:
        return
    total = sum(att.buckets.values())
    if total != att.window_ns or set(att.buckets) != set(BUCKETS):
        raise TracekitError(
            state.trace.path,
            f"internal error after {stage.__name__}: "
            f"buckets sum to {total} ns, window is {att.window_ns} ns",
        )


def run_stages(
    state: RankState,
    stages: Sequence[Stage] = RANK_STAGES,
    timings: list[tuple[str, float]] | None = None,
) -> RankState:
    """Each stage in order, the invariant checked after each; ``timings`` collects
    (stage name, ms) for ``-v`` (``analyzers.engine.stage_log``)."""
    for stage in stages:
        start = time.perf_counter()
        state = stage(state)
        check_state(state, stage)
        if timings is not None:
            timings.append((stage.__name__, (time.perf_counter() - start) * 1e3))
    return state


def analyze(
    path: str | Path,
    progress: Progress | None = None,
    stages: Sequence[Stage] = RANK_STAGES,
    jobs: int | None = None,
) -> Analysis:
    """``jobs``: ranks analysed at once in worker processes (None: one per core, capped by
    the files; 1: here). Whatever it is, the Analysis is the same."""
    from analyzers.engine.rank_pool import analyze_pooled

    return analyze_pooled(path, progress, stages, jobs)


def rank_states(trace: Trace, facts: RunFacts | None = None) -> list[RankState]:
    """Each rank's initial state, over the run's common window; ``facts`` defaults to what
    the trace's run directory says."""
    facts = facts if facts is not None else run_facts(trace)
    window = common_window(
        [own_window(r.events, classify_events(r.events, trace.names)) for r in trace.ranks]
    )
    return [RankState(r, trace.names, facts=facts, window=window) for r in trace.ranks]


def analyze_trace(
    trace: Trace, stages: Sequence[Stage] = RANK_STAGES, facts: RunFacts | None = None
) -> Analysis:
    from analyzers.engine import stage_log

    facts = facts if facts is not None else run_facts(trace)
    states = []
    for state in rank_states(trace, facts):
        timings: list[tuple[str, float]] = []
        states.append(run_stages(state, stages, timings))
        stats = stage_log.FileStats(
            Path(state.trace.path).name, 0, 0.0, len(state.trace.events), tuple(timings)
        )
        stage_log.log_rank(state.trace.id.label, stats)
    with stage_log.timed("run-level reports"):
        return assemble(trace, states, facts)


def assemble(trace: Trace, states: Sequence[RankState], facts: RunFacts) -> Analysis:
    """The run-level Analysis from ranks whose stages have run (shared with the exporter)."""
    return merge(RunInfo.of(trace), [rank_digest(s, facts) for s in states], facts)


def rank_digest(state: RankState, facts: RunFacts | None) -> RankDigest:
    """A rank whose stages have run, in the compact form the run-level reports read."""
    return digest(state, rank_result(state), facts)
