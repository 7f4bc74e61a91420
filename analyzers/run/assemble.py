"""The run-level Analysis from every rank's digest: reports across ranks and the verdict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from analyzers.rank.digest import RankDigest, RunInfo
from analyzers.rank.kv_stall import kv_report
from analyzers.read.run_facts import RunFacts
from analyzers.run.bubbles import bubbles, moe_report
from analyzers.run.collective_report import collectives
from analyzers.run.engine_timeline import engine_stats
from analyzers.run.overhead import run_context
from analyzers.run.peak_report import peaks_report
from analyzers.run.step_flags import window_outliers
from analyzers.run.verdict import Reports, verdict
from analyzers.run.window import compile_warnings, window_warnings
from tracekit.core.analysis import ROOFLINE, Analysis, RankResult, StepStats, check_invariant
from tracekit.core.version import __version__

COMPUTE_HBM_BASIS = (
    "name prior: the rule table in analyzers/rank/rules.py (GEMM and prefill "
    "attention = compute; decode attention, norms, elementwise, copies = HBM)"
)
STEP_BASIS = (
    "roofline (model config + step tokens) inside engine steps on {ranks}: each step's "
    "FLOPs / bytes against the ridge point"
)
OPS_BASIS = (
    "per op call from trace shapes on {ranks} (taking precedence): each call's FLOPs / bytes"
)


def merge(run: RunInfo, digests: Sequence[RankDigest], facts: RunFacts) -> Analysis:
    """The run-level Analysis from every rank's digest, in rank order."""
    results = [d.result for d in digests]
    warnings = list(run.warnings)
    for rank in results:
        warnings += [f"{rank.label}: {n} {why}" for why, n in rank.ignored.items()]
    warnings += window_warnings(results)
    warnings += compile_warnings(results)
    if facts.model is not None and facts.spec is None and facts.spec_note:
        warnings.append(f"roofline not applied: {facts.spec_note}")
    engine = engine_stats(facts.records)
    basis = compute_hbm_basis(results, facts)
    lay = facts.layout
    device: Literal["gpu", "cpu"] = "gpu" if any(r.device == "gpu" for r in results) else "cpu"
    context = run_context(facts.records, results, run.manifest, device)
    peaks = peaks_report(results, facts.spec, facts.spec_note)
    reports = Reports(
        kv=kv_report(facts, results),
        collectives=collectives(digests, facts),
        bubbles=bubbles(digests, lay.pp),
        moe=moe_report(results, facts.model),
        step_stats=step_stats(results),
        layout={"dp": facts.dp, "tp": lay.tp, "pp": lay.pp, "ep": lay.ep},
        moe_model=bool(facts.model and facts.model.experts),
        context=context,
        dtype=((run.manifest or {}).get("model") or {}).get("dtype"),
        peak_suspect=peaks.suspect,
    )
    analysis = Analysis(
        tracekit_version=__version__,
        source=run.source,
        run_dir=run.run_dir,
        device=device,
        compute_hbm_basis=basis,
        ranks=results,
        step_stats=list(reports.step_stats),
        regime=verdict(results, basis, engine, reports),
        warnings=warnings,
        engine_warnings=list(facts.engine_warnings),
        engine=engine,
        manifest=run.manifest,
        hardware=facts.spec,
        kv=reports.kv,
        collectives=reports.collectives,
        bubbles=reports.bubbles,
        moe=reports.moe,
        context=context,
        peaks=peaks,
    )
    check_invariant(analysis, run.source)
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
    parts += [OPS_BASIS.format(ranks=which(shaped))] if shaped else []
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
