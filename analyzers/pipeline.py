"""The stage loop: per-rank stages in order, the invariant checked after each, then the run.

A stage is a plain function ``RankState -> RankState`` that returns a new state and never
mutates its input. Callers choose the stage list; ``run_stages`` is the one loop that runs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from analyzers.attribute import Attribution, attribute
from analyzers.classify import (
    FAMILIES,
    UNCLASSIFIED_INDEX,
    classify_events,
    route_moe_host_ops,
)
from analyzers.engine_steps import engine_stats
from analyzers.loader import Progress, load
from analyzers.regime import verdict
from analyzers.rules import FAMILY_BUCKET
from analyzers.steps import StepRow, find_steps
from tracekit import __version__, rundir
from tracekit.analysis import Analysis, OpTime, RankResult, Step, StepStats, check_invariant
from tracekit.buckets import BUCKETS
from tracekit.errors import TracekitError
from tracekit.model import Kind, NameTable, RankTrace, Trace

COMPUTE_HBM_BASIS = (
    "name prior: the rule table in analyzers/rules.py (GEMM and prefill "
    "attention = compute; decode attention, norms, elementwise, copies = HBM); "
    "no roofline from FLOPs and bytes yet"
)
_GRAPH_LAUNCH = re.compile(r"GraphLaunch", re.IGNORECASE)
TOP_PER_BUCKET = 5
TOP_UNCLASSIFIED = 10


@dataclass(frozen=True)
class RankState:
    trace: RankTrace
    names: NameTable
    family: np.ndarray | None = None
    attribution: Attribution | None = None
    steps: tuple[StepRow, ...] | None = None


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


RANK_STAGES: tuple[Stage, ...] = (classify_stage, attribute_stage, steps_stage)


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
    path: str | Path, progress: Progress | None = None, stages: Sequence[Stage] = RANK_STAGES
) -> Analysis:
    return analyze_trace(load(path, progress), stages)


def analyze_trace(trace: Trace, stages: Sequence[Stage] = RANK_STAGES) -> Analysis:
    results = [rank_result(run_stages(RankState(r, trace.names), stages)) for r in trace.ranks]
    warnings = list(trace.warnings)
    for rank in trace.ranks:
        warnings += [f"{rank.id.label}: {n} {why}" for why, n in rank.ignored.items()]
    records = rundir.read_steps(Path(trace.run_dir)) if trace.run_dir else []
    engine = engine_stats(records)
    analysis = Analysis(
        tracekit_version=__version__,
        source=trace.source,
        run_dir=trace.run_dir,
        device="gpu" if any(r.device == "gpu" for r in results) else "cpu",
        compute_hbm_basis=COMPUTE_HBM_BASIS,
        ranks=results,
        step_stats=step_stats(results),
        regime=verdict(results, COMPUTE_HBM_BASIS, engine),
        warnings=warnings,
        engine=engine,
        manifest=trace.manifest,
    )
    check_invariant(analysis, trace.source)
    return analysis


def rank_result(state: RankState) -> RankResult:
    att, trace = state.attribution, state.trace
    if att is None or state.steps is None:
        raise ValueError("rank_result needs the attribute and steps stages")
    ev = trace.events
    top, unclassified = _op_tables(state, att)
    kinds = np.bincount(ev.kind, minlength=len(Kind))
    return RankResult(
        rank=trace.id.rank,
        identity=trace.id,
        label=trace.id.label,
        path=trace.path,
        device="gpu" if att.device == "gpu" else "cpu",
        devices=list(trace.devices),
        device_names=list(trace.device_names),
        clock=trace.clock,
        window_start_ns=att.window_start_ns,
        window_ns=att.window_ns,
        buckets=att.buckets,
        families=att.families,
        overlapped=att.overlapped,
        event_counts={k.name.lower(): int(kinds[k]) for k in Kind if kinds[k]},
        graph_kernels=_graph_kernels(state),
        top_ops=top,
        unclassified=unclassified,
        steps=[
            Step(
                s.start_ns,
                s.dur_ns,
                s.kind,
                s.context_requests,
                s.context_tokens,
                s.generation_requests,
                s.generation_tokens,
            )
            for s in state.steps
        ],
        ignored=dict(trace.ignored),
    )


def _op_tables(state: RankState, att: Attribution) -> tuple[list[OpTime], list[OpTime]]:
    ev = state.trace.events
    rows = np.flatnonzero(att.op_ns > 0)
    if not len(rows):
        return [], []
    key = ev.name_id[rows].astype(np.int64) * len(FAMILIES) + att.op_family[rows]
    keys, inverse = np.unique(key, return_inverse=True)
    totals = np.bincount(inverse, weights=att.op_ns[rows]).astype(np.int64)
    counts = np.bincount(inverse)
    ops = []
    for k, total, count in zip(keys.tolist(), totals.tolist(), counts.tolist(), strict=True):
        name_id, fam = divmod(k, len(FAMILIES))
        family = FAMILIES[fam]
        ops.append(OpTime(state.names[name_id], family, FAMILY_BUCKET[family], count, total))
    ops.sort(key=lambda o: (-o.total_ns, o.name))
    top: list[OpTime] = []
    for bucket in BUCKETS:
        top += [o for o in ops if o.bucket == bucket][:TOP_PER_BUCKET]
    top.sort(key=lambda o: (-o.total_ns, o.name))
    unclassified = [o for o in ops if o.family == FAMILIES[UNCLASSIFIED_INDEX]]
    return top, unclassified[:TOP_UNCLASSIFIED]


def _graph_kernels(state: RankState) -> int:
    """Kernels replayed from a CUDA/HIP graph: they share one graph launch's correlation id."""
    ev, names = state.trace.events, state.names
    runtime = np.flatnonzero(ev.kind == Kind.RUNTIME)
    if not len(runtime):
        return 0
    ids, inverse = np.unique(ev.name_id[runtime], return_inverse=True)
    is_launch = np.array([bool(_GRAPH_LAUNCH.search(names[int(i)])) for i in ids])
    launches = ev.correlation[runtime[is_launch[inverse]]]
    kernels = ev.kind == Kind.KERNEL
    return int(np.isin(ev.correlation[kernels], launches[launches >= 0]).sum())


def step_stats(ranks: Sequence[RankResult]) -> list[StepStats]:
    """Steps of one annotating rank per DP replica (TP/PP ranks repeat the same steps)."""
    chosen: dict[int | None, RankResult] = {}
    for rank in ranks:
        if rank.steps:
            chosen.setdefault(rank.identity.dp, rank)
    steps = [s for r in chosen.values() for s in r.steps]
    if not steps:
        return []
    out = []
    for kind in ("prefill", "decode", "mixed", "all"):
        group = [s for s in steps if kind in ("all", s.kind)]
        if not group:
            continue
        durs = np.array([s.dur_ns for s in group], dtype=np.int64)
        out.append(
            StepStats(
                kind=kind,
                count=len(group),
                context_tokens=sum(s.context_tokens for s in group),
                generation_tokens=sum(s.generation_tokens for s in group),
                total_ns=int(durs.sum()),
                mean_ns=int(durs.mean()),
                p50_ns=int(np.percentile(durs, 50, method="inverted_cdf")),
                p90_ns=int(np.percentile(durs, 90, method="inverted_cdf")),
                max_ns=int(durs.max()),
            )
        )
    return out
