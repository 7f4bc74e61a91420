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
from analyzers.bubbles import bubbles, moe_report
from analyzers.classify import (
    FAMILIES,
    UNCLASSIFIED_INDEX,
    classify_events,
    route_moe_host_ops,
)
from analyzers.collectives import collectives
from analyzers.engine_steps import engine_stats
from analyzers.kv_stall import kv_report, kv_stall
from analyzers.loader import Progress, load
from analyzers.regime import Reports, verdict
from analyzers.roofline import ModelConfig, RunFacts, Shard, dtype_bytes, roofline
from analyzers.steps import StepRow, find_steps
from tracekit import __version__, hardware, rundir
from tracekit.analysis import (
    NAME_PRIOR,
    ROOFLINE,
    Analysis,
    OpTime,
    RankKv,
    RankResult,
    RankRoofline,
    Step,
    StepStats,
    check_invariant,
)
from tracekit.buckets import BUCKETS
from tracekit.errors import TracekitError
from tracekit.model import Kind, NameTable, RankTrace, Trace

COMPUTE_HBM_BASIS = (
    "name prior: the rule table in analyzers/rules.py (GEMM and prefill "
    "attention = compute; decode attention, norms, elementwise, copies = HBM)"
)
ROOFLINE_BASIS = (
    "roofline (model config + step tokens) inside engine steps on {ranks}: each step's "
    "FLOPs / bytes against the ridge point of {device} ({ridge:.1f} FLOP/byte, {source}); "
    "outside modelled steps and for unclassified ops the " + COMPUTE_HBM_BASIS
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
    """``jobs``: processes parsing rank files at once (None: one per core, capped by files)."""
    return analyze_trace(load(path, progress, jobs=jobs), stages)


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
    results = [rank_result(s) for s in states]
    warnings = list(trace.warnings)
    for rank in trace.ranks:
        warnings += [f"{rank.id.label}: {n} {why}" for why, n in rank.ignored.items()]
    if facts.model is not None and facts.spec is None and facts.spec_note:
        warnings.append(f"roofline not applied: {facts.spec_note}")
    engine = engine_stats(facts.records)
    basis = compute_hbm_basis(results, facts)
    lay = facts.layout
    reports = Reports(
        kv=kv_report(facts, results),
        collectives=collectives(states, facts),
        bubbles=bubbles(results, states, lay.pp),
        moe=moe_report(results, facts.model),
        step_stats=step_stats(results),
        layout={"dp": facts.dp, "tp": lay.tp, "pp": lay.pp, "ep": lay.ep},
        moe_model=bool(facts.model and facts.model.experts),
    )
    analysis = Analysis(
        tracekit_version=__version__,
        source=trace.source,
        run_dir=trace.run_dir,
        device="gpu" if any(r.device == "gpu" for r in results) else "cpu",
        compute_hbm_basis=basis,
        ranks=results,
        step_stats=list(reports.step_stats),
        regime=verdict(results, basis, engine, reports),
        warnings=warnings,
        engine=engine,
        manifest=trace.manifest,
        hardware=facts.spec,
        kv=reports.kv,
        collectives=reports.collectives,
        bubbles=reports.bubbles,
        moe=reports.moe,
    )
    check_invariant(analysis, trace.source)
    return analysis


def run_facts(trace: Trace) -> RunFacts:
    """Model config, layout, KV cache, step records and device peaks of a run directory."""
    records = tuple(rundir.read_steps(Path(trace.run_dir))) if trace.run_dir else ()
    manifest = trace.manifest or {}
    model = ModelConfig.from_manifest(manifest.get("model"))
    layout = manifest.get("layout") or {}
    kv = manifest.get("kv_cache") or {}
    spec, note = None, ""
    names = [n for r in trace.ranks for n in r.device_names if n]
    if any(r.has_device for r in trace.ranks):
        spec = next((s for s in map(hardware.gpu_spec, names) if s), None)
        note = "" if spec else f"no spec-table row for the device(s) {sorted(set(names))}"
    elif model is not None:
        spec, note = hardware.cpu_spec((manifest.get("hardware") or {}).get("cpu_model"))
    kv_dtype = kv.get("dtype")
    return RunFacts(
        model=model,
        layout=Shard(
            tp=int(layout.get("tp") or 1),
            pp=int(layout.get("pp") or 1),
            ep=int(layout.get("ep") or 1),
        ),
        dp=int(layout.get("dp") or 1),
        block_size=kv.get("block_size"),
        num_blocks=kv.get("num_blocks"),
        kv_dtype_bytes=None if kv_dtype in (None, "auto") else dtype_bytes(kv_dtype),
        records=records,
        spec=spec,
        spec_note=note,
    )


def compute_hbm_basis(results: Sequence[RankResult], facts: RunFacts) -> str:
    """Which basis each rank's compute vs HBM split used, in one sentence."""
    modelled = [r.label for r in results if r.compute_hbm_basis == ROOFLINE]
    spec = facts.spec
    if not modelled or spec is None:
        reason = (
            "no model config in the input"
            if facts.model is None
            else facts.spec_note or "no engine step with tokens in the trace"
        )
        return f"{COMPUTE_HBM_BASIS}; no roofline: {reason}"
    ranks = "all ranks" if len(modelled) == len(results) else ", ".join(modelled)
    return ROOFLINE_BASIS.format(
        ranks=ranks, device=spec.name, ridge=spec.ridge, source=spec.source
    )


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
        compute_hbm_basis=state.roofline.basis if state.roofline else NAME_PRIOR,
        roofline=state.roofline,
        kv=state.kv,
    )


def _op_tables(state: RankState, att: Attribution) -> tuple[list[OpTime], list[OpTime]]:
    ev = state.trace.events
    rows = np.flatnonzero(att.op_ns > 0)
    if not len(rows):
        return [], []
    key = (ev.name_id[rows].astype(np.int64) * len(FAMILIES) + att.op_family[rows]) * len(
        BUCKETS
    ) + att.op_bucket[rows]
    keys, inverse = np.unique(key, return_inverse=True)
    totals = np.bincount(inverse, weights=att.op_ns[rows]).astype(np.int64)
    counts = np.bincount(inverse)
    ops = []
    for k, total, count in zip(keys.tolist(), totals.tolist(), counts.tolist(), strict=True):
        rest, bucket = divmod(k, len(BUCKETS))
        name_id, fam = divmod(rest, len(FAMILIES))
        ops.append(OpTime(state.names[name_id], FAMILIES[fam], BUCKETS[bucket], count, total))
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
