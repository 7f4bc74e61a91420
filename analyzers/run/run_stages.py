"""The run-level stages: the Analysis from every rank's digest, looped like the per-rank ones.

A run-level stage is a plain function ``RunState -> RunState`` that returns a new state with
one more report filled in and never mutates its input; ``run_stages`` runs ``RUN_STAGES`` in
order and ``analysis_of`` turns the last state into the Analysis, whose invariant (every
rank's buckets partition its window) is checked before it is returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import msgspec
import numpy as np

from analyzers.rank.digest import RankDigest, RunInfo
from analyzers.rank.kv_stall import kv_report
from analyzers.rank.op_bounds import CAPTURE_SOURCE
from analyzers.read.run_facts import RunFacts
from analyzers.run.bubbles import bubbles, moe_report
from analyzers.run.collective_report import collectives
from analyzers.run.engine_timeline import engine_stats
from analyzers.run.kv_reads import kv_reads
from analyzers.run.overhead import run_context
from analyzers.run.peak_report import peaks_report
from analyzers.run.step_flags import window_outliers
from analyzers.run.stragglers import stragglers
from analyzers.run.verdict import Reports, verdict
from analyzers.run.window import compile_warnings, window_warnings
from tracekit.core.analysis import (
    ROOFLINE,
    Analysis,
    Bubbles,
    Collectives,
    EngineStats,
    KvReport,
    MoeReport,
    Peaks,
    RankResult,
    StepStats,
    check_invariant,
)
from tracekit.core.regime_table import Regime
from tracekit.core.run_context import RunContext
from tracekit.core.stragglers import Stragglers
from tracekit.core.version import __version__

COMPUTE_HBM_BASIS = (
    "name prior: the rule table in analyzers/rank/rules.py (GEMM and prefill "
    "attention = compute; decode attention, norms, elementwise, copies = HBM)"
)
STEP_BASIS = (
    "roofline (model config + step tokens) inside engine steps on {ranks}: each step's "
    "FLOPs / bytes against the ridge point"
)
OPS_BASIS = "per op call from {shapes} on {ranks} (taking precedence): each call's FLOPs / bytes"


@dataclass(frozen=True)
class RunState:
    """The run as the run-level stages see it: every rank's digest and what each stage added."""

    run: RunInfo
    digests: tuple[RankDigest, ...]
    facts: RunFacts
    warnings: tuple[str, ...] = ()
    device: Literal["gpu", "cpu"] = "cpu"
    basis: str = ""
    engine: EngineStats | None = None
    context: RunContext | None = None
    peaks: Peaks | None = None
    kv: KvReport | None = None
    collectives: Collectives | None = None
    stragglers: Stragglers | None = None
    bubbles: Bubbles | None = None
    moe: MoeReport | None = None
    step_stats: tuple[StepStats, ...] = ()
    regime: Regime | None = None

    @property
    def results(self) -> list[RankResult]:
        return [d.result for d in self.digests]


RunStage = Callable[[RunState], RunState]


def warnings_stage(s: RunState) -> RunState:
    """The run's warnings: its input's, each rank's ignored events, windows, compilation."""
    results = s.results
    warnings = list(s.run.warnings)
    for rank in results:
        warnings += [f"{rank.label}: {n} {why}" for why, n in rank.ignored.items()]
    warnings += window_warnings(results)
    warnings += compile_warnings(results)
    if s.facts.model is not None and s.facts.spec is None and s.facts.spec_note:
        warnings.append(f"roofline not applied: {s.facts.spec_note}")
    return replace(s, warnings=tuple(warnings))


def engine_stage(s: RunState) -> RunState:
    """The scheduler / KV-cache timeline from the step records."""
    return replace(s, engine=engine_stats(s.facts.records))


def basis_stage(s: RunState) -> RunState:
    """Which basis each rank's compute vs HBM split used, and the run's device kind."""
    results = s.results
    device: Literal["gpu", "cpu"] = "gpu" if any(r.device == "gpu" for r in results) else "cpu"
    return replace(s, basis=compute_hbm_basis(results, s.facts), device=device)


def context_stage(s: RunState) -> RunState:
    """What the figures cover: the profiled window against the whole run."""
    return replace(s, context=run_context(s.facts.records, s.results, s.run.manifest, s.device))


def peaks_stage(s: RunState) -> RunState:
    """Where the peaks came from, and whether the run's own figures contradict them."""
    return replace(s, peaks=peaks_report(s.results, s.facts.spec, s.facts.spec_note))


def kv_stage(s: RunState) -> RunState:
    """Capacity against the running batch, and the KV bytes decode attention read."""
    kv = kv_report(s.facts, s.results)
    if kv is not None:
        kv = msgspec.structs.replace(kv, reads=kv_reads(s.facts))
    return replace(s, kv=kv)


def collectives_stage(s: RunState) -> RunState:
    return replace(s, collectives=collectives(s.digests, s.facts))


def stragglers_stage(s: RunState) -> RunState:
    """Who arrives last at collectives, per group, step and call; a slow rank named."""
    return replace(s, stragglers=stragglers(s.digests))


def bubbles_stage(s: RunState) -> RunState:
    return replace(s, bubbles=bubbles(s.digests, s.facts.layout.pp))


def moe_stage(s: RunState) -> RunState:
    return replace(s, moe=moe_report(s.results, s.facts.model))


def step_stats_stage(s: RunState) -> RunState:
    return replace(s, step_stats=tuple(step_stats(s.results)))


def verdict_stage(s: RunState) -> RunState:
    """The regime verdict from the bucket shares and every report above."""
    facts = s.facts
    reports = Reports(
        kv=s.kv,
        collectives=s.collectives,
        bubbles=s.bubbles,
        moe=s.moe,
        step_stats=s.step_stats,
        layout=facts.layout,
        moe_model=bool(facts.model and facts.model.experts),
        context=s.context,
        dtype=((s.run.manifest or {}).get("model") or {}).get("dtype"),
        peak_suspect=s.peaks.suspect if s.peaks is not None else None,
    )
    return replace(s, regime=verdict(s.results, s.engine, reports))


RUN_STAGES: tuple[RunStage, ...] = (
    warnings_stage,
    engine_stage,
    basis_stage,
    context_stage,
    peaks_stage,
    kv_stage,
    collectives_stage,
    stragglers_stage,
    bubbles_stage,
    moe_stage,
    step_stats_stage,
    verdict_stage,
)


def run_stages(
    state: RunState,
    stages: Sequence[RunStage] = RUN_STAGES,
    timings: list[tuple[str, float]] | None = None,
) -> RunState:
    """Each run-level stage in order; ``timings`` collects (stage name, ms) for ``-v``."""
    for stage in stages:
        start = time.perf_counter()
        state = stage(state)
        if timings is not None:
            timings.append((stage.__name__, (time.perf_counter() - start) * 1e3))
    return state


def analysis_of(s: RunState) -> Analysis:
    """The Analysis from a run whose stages have run, its invariant checked."""
    if s.regime is None or s.peaks is None or s.context is None:
        raise ValueError("analysis_of needs verdict_stage, peaks_stage and context_stage")
    analysis = Analysis(
        tracekit_version=__version__,
        source=s.run.source,
        run_dir=s.run.run_dir,
        device=s.device,
        compute_hbm_basis=s.basis,
        ranks=s.results,
        step_stats=list(s.step_stats),
        regime=s.regime,
        warnings=list(s.warnings),
        engine_warnings=list(s.facts.engine_warnings),
        engine=s.engine,
        manifest=s.run.manifest,
        hardware=s.facts.spec,
        kv=s.kv,
        collectives=s.collectives,
        stragglers=s.stragglers,
        bubbles=s.bubbles,
        moe=s.moe,
        context=s.context,
        peaks=s.peaks,
    )
    check_invariant(analysis, s.run.source)
    return analysis


def compute_hbm_basis(results: Sequence[RankResult], facts: RunFacts) -> str:
    """Which basis each rank's compute vs HBM split used, in one sentence."""
    stepped = [r.label for r in results if r.compute_hbm_basis == ROOFLINE]
    shaped = [r.label for r in results if r.roofline is not None and r.roofline.ops]
    spec = facts.spec
    if not (stepped or shaped) or spec is None:
        reason = (
            facts.spec_note or "no model config in the input"
            if facts.model is None
            else facts.spec_note or "no engine step with tokens in the trace"
        )
        return f"{COMPUTE_HBM_BASIS}; no roofline: {reason}"

    def which(labels: list[str]) -> str:
        return "all ranks" if len(labels) == len(results) else ", ".join(labels)

    parts = [STEP_BASIS.format(ranks=which(stepped))] if stepped else []
    captured = any(
        o.source == CAPTURE_SOURCE for r in results if r.roofline for o in r.roofline.ops
    )
    shapes = "trace shapes and graph-capture shapes" if captured else "trace shapes"
    parts += [OPS_BASIS.format(shapes=shapes, ranks=which(shaped))] if shaped else []
    return (
        f"{'; '.join(parts)}; against {spec.name} ({spec.ridge:.1f} FLOP/byte, {spec.source}); "
        "outside modelled steps and costed ops and for unclassified ops the " + COMPUTE_HBM_BASIS
    )


def step_stats(ranks: Sequence[RankResult]) -> list[StepStats]:
    """Steps of one annotating rank per DP replica (TP/PP ranks repeat the same steps), in
    the profiled window; mean / p50 / p90 leave out steps longer than OUTLIER_FACTOR × their
    replica's median step (analyzers.run.step_flags)."""
    chosen: dict[int | None, RankResult] = {}
    for rank in ranks:
        if rank.steps:
            chosen.setdefault(rank.identity.dp, rank)
    steps = [s for r in chosen.values() for s in r.steps]
    if not steps:
        return []
    outlier = np.concatenate(
        [
            window_outliers(np.array([s.dur_ns for s in r.steps], dtype=np.int64))
            for r in chosen.values()
        ]
    )
    out = []
    for kind in ("prefill", "decode", "mixed", "all"):
        rows = [i for i, s in enumerate(steps) if kind in ("all", s.kind)]
        if not rows:
            continue
        group = [steps[i] for i in rows]
        durs = np.array([s.dur_ns for s in group], dtype=np.int64)
        out_rows = outlier[rows]
        kept = durs[~out_rows] if not out_rows.all() else durs
        out.append(
            StepStats(
                kind=kind,
                count=len(group),
                context_tokens=sum(s.context_tokens for s in group),
                generation_tokens=sum(s.generation_tokens for s in group),
                total_ns=int(durs.sum()),
                mean_ns=int(kept.mean()),
                p50_ns=int(np.percentile(kept, 50, method="inverted_cdf")),
                p90_ns=int(np.percentile(kept, 90, method="inverted_cdf")),
                max_ns=int(durs.max()),
                excluded=len(durs) - len(kept),
            )
        )
    return out
