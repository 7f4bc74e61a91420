"""The per-rank stages, in order, and the loop that runs them with the invariant checked after each.

A stage is a plain function ``RankState -> RankState`` that returns a new state and never
mutates its input. Callers choose the stage list; ``run_stages`` is the one loop that runs it.
The driver (``analyzers.engine.driver``) sets on each state what the run settled before any
stage ran: the rank's identity, the device peaks (``facts.spec``) and the run's common
window (``analyzers.run.window``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from analyzers.rank.attribute import Attribution, attribute
from analyzers.rank.classify import (
    classify_events,
    route_moe_host_ops,
)
from analyzers.rank.graph_merge import merge_captures
from analyzers.rank.kv_stall import kv_stall
from analyzers.rank.roofline_stage import roofline, step_windows
from analyzers.rank.step_annotations import StepRow, find_steps
from analyzers.read.run_facts import RunFacts
from analyzers.run.window import Window
from tracekit.core.analysis import (
    RankKv,
    RankRoofline,
)
from tracekit.core.buckets import BUCKETS
from tracekit.core.errors import TracekitError
from tracekit.core.trace_model import NameTable, RankTrace


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
    """Compute vs HBM: per op call from trace shapes and, for graph-replayed kernels, from the
    capture traces beside the trace (``capture_traces/``); inside engine steps from the model
    config."""
    if state.facts is None or state.attribution is None or state.steps is None:
        return state
    events = state.trace.events
    graph = None
    if state.attribution.device == "gpu":
        graph = merge_captures(events, state.names, state.trace.path, state.steps)
    att, result = roofline(
        state.attribution, events, state.steps, state.facts, state.trace.id, graph
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
