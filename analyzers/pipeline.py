"""The stage loop: per-rank stages in order, the invariant checked after each, then the run.

A stage is a plain function ``RankState -> RankState`` that returns a new state and never
mutates its input. Callers choose the stage list; ``run_stages`` is the one loop that runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from analyzers.attribute import Attribution, attribute
from analyzers.classify import (
    classify_events,
    route_moe_host_ops,
)
from analyzers.digest import RankDigest, RunInfo, digest
from analyzers.facts import RunFacts, run_facts
from analyzers.kv_stall import kv_stall
from analyzers.loader import Progress
from analyzers.merge import merge
from analyzers.rank_result import rank_result
from analyzers.roofline import roofline
from analyzers.steps import StepRow, find_steps
from tracekit.analysis import (
    Analysis,
    RankKv,
    RankRoofline,
)
from tracekit.buckets import BUCKETS
from tracekit.errors import TracekitError
from tracekit.model import NameTable, RankTrace, Trace


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


Stage = Callable[[RankState], RankState]


def classify_stage(state: RankState) -> RankState:
    events, names = state.trace.events, state.names
    family = route_moe_host_ops(events, names, classify_events(events, names))
    return replace(state, family=family)


def attribute_stage(state: RankState) -> RankState:
    if state.family is None:
        raise ValueError("attribute_stage needs classify_stage first")
    return replace(state, attribution=attribute(state.trace.events, state.family, state.names))


def steps_stage(state: RankState) -> RankState:
    return replace(state, steps=tuple(find_steps(state.trace.events, state.names)))


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


def run_stages(state: RankState, stages: Sequence[Stage] = RANK_STAGES) -> RankState:
    for stage in stages:
        state = stage(state)
        check_state(state, stage)
    return state


def analyze(
    path: str | Path,
    progress: Progress | None = None,
    stages: Sequence[Stage] = RANK_STAGES,
    jobs: int | None = None,
) -> Analysis:
    """``jobs``: ranks analysed at once in worker processes (None: one per core, capped by
    the files; 1: here). Whatever it is, the Analysis is the same."""
    from analyzers.rank_pool import analyze_pooled

    return analyze_pooled(path, progress, stages, jobs)


def rank_states(trace: Trace, facts: RunFacts | None = None) -> list[RankState]:
    """Each rank's initial state; ``facts`` defaults to what the trace's run directory says."""
    facts = facts if facts is not None else run_facts(trace)
    return [RankState(r, trace.names, facts=facts) for r in trace.ranks]


def analyze_trace(
    trace: Trace, stages: Sequence[Stage] = RANK_STAGES, facts: RunFacts | None = None
) -> Analysis:
    facts = facts if facts is not None else run_facts(trace)
    states = [run_stages(s, stages) for s in rank_states(trace, facts)]
    return assemble(trace, states, facts)


def assemble(trace: Trace, states: Sequence[RankState], facts: RunFacts) -> Analysis:
    """The run-level Analysis from ranks whose stages have run (shared with the exporter)."""
    return merge(RunInfo.of(trace), [rank_digest(s, facts) for s in states], facts)


def rank_digest(state: RankState, facts: RunFacts | None) -> RankDigest:
    """A rank whose stages have run, in the compact form the run-level reports read."""
    return digest(state, rank_result(state), facts)
