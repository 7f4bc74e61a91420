"""Run-level stage: the regime verdict from bucket shares and the run-level reports.

One signal per regime (tracekit.core.regime_table documents the table): a bucket share of
the analysed time, or for capacity-bound the share of engine step time with the KV cache full while
requests wait. ``score = signal / threshold``; the highest score wins. The evidence lists the
figures that decided it, each naming its source, and the advice is the paper's decision
framework applied to the run's layout and device: CPU runs get CPU levers, GPU runs GPU levers,
and CUDA-graph advice only where a GPU run had graphs off (tracekit.core.regime_table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tracekit.core.analysis import (
    Bubbles,
    Collectives,
    EngineStats,
    KvReport,
    MoeReport,
    RankResult,
    StepStats,
)
from tracekit.core.buckets import BUCKETS, HOST, IDLE
from tracekit.core.layout import Layout
from tracekit.core.regime_table import (
    CAPACITY,
    CPU_BF16,
    CPU_EAGER,
    GRAPHS_OFF,
    HOST_EVIDENCE,
    IDLE_EVIDENCE,
    KV_SIGNAL,
    NOT_ASSESSED_CAPACITY,
    REGIME_RULES,
    EvidenceKind,
    Regime,
    RegimeRule,
    RunnerUp,
    Signal,
)
from tracekit.core.run_context import RunContext

#: the regimes the roofline's compute vs HBM split decides
ROOFLINE_REGIMES = ("compute-bound", "hbm-bound")


@dataclass(frozen=True)
class Reports:
    """The run-level reports the verdict may cite (each optional)."""

    kv: KvReport | None = None
    collectives: Collectives | None = None
    bubbles: Bubbles | None = None
    moe: MoeReport | None = None
    step_stats: Sequence[StepStats] = ()
    layout: Layout = field(default_factory=Layout)
    moe_model: bool = False
    context: RunContext | None = None  # device, execution mode, profiler overhead
    dtype: str | None = None  # the model's dtype (manifest)
    # set when roofline figures exceed the peak (analyzers.run.peak_report): compute-bound and
    # hbm-bound are then not assessed, the rest still are
    peak_suspect: str | None = None


def verdict(
    ranks: Sequence[RankResult],
    engine: EngineStats | None = None,
    reports: Reports | None = None,
) -> Regime:
    rep = reports or Reports()
    window = sum(r.window_ns for r in ranks)
    totals = {k: sum(r.buckets[k] for r in ranks) for k in BUCKETS}
    share = {k: (v / window if window else 0.0) for k, v in totals.items()}
    rules: list[RegimeRule] = list(REGIME_RULES)
    signal = {r.name: sum(share[k] for k in r.buckets) for r in rules}
    not_assessed = {}
    capacity = (
        rep.kv.stalled_share
        if rep.kv is not None
        else engine.kv_full_waiting_share
        if engine is not None
        else None
    )
    if rep.peak_suspect:
        for rule in [r for r in rules if r.name in ROOFLINE_REGIMES]:
            rules.remove(rule)
            not_assessed[rule.name] = (
                f"the compute vs HBM split rests on suspect peaks: {rep.peak_suspect}"
            )
    if capacity is None:
        not_assessed[CAPACITY.name] = NOT_ASSESSED_CAPACITY
    else:
        rules.append(CAPACITY)
        signal[CAPACITY.name] = capacity
    scores = {r.name: round(signal[r.name] / r.threshold, 3) for r in rules}
    ranked = sorted(rules, key=lambda r: scores[r.name], reverse=True)
    best = ranked[0]
    deciding = Signal(
        what="+".join(best.buckets) if best.buckets else KV_SIGNAL,
        share=signal[best.name],
        of="analysed time" if best.buckets else "engine step time",
        ranks=len(ranks),
        source="trace buckets" if best.buckets else engine.source if engine else "steps/",
        threshold=best.threshold,
        score=scores[best.name],
    )
    evidence = _deciding(best.name, rep)
    if engine is not None:
        evidence.append("engine")
    if share[IDLE] > IDLE_EVIDENCE:
        evidence.append("idle")
    if best.name != "host-bound" and share[HOST] > HOST_EVIDENCE:
        evidence.append("host")
    added = rep.context.overhead.added_share.value if rep.context else None
    if added and share[HOST] > HOST_EVIDENCE:
        evidence.append("profiler_overhead")
    runners = [RunnerUp(r.name, scores[r.name]) for r in ranked[1:3] if scores[r.name] > 0]
    return Regime(
        name=best.name,
        label=best.label,
        scores=scores,
        signal=deciding,
        evidence=evidence,
        advice=_advice(best, rep),
        runners_up=runners,
        not_assessed=not_assessed,
    )


def _deciding(name: str, rep: Reports) -> list[EvidenceKind]:
    """Which of the Analysis's figures stand behind the winning regime (the renderers word
    them: ``tracekit.render.verdict``)."""
    if name in ("compute-bound", "hbm-bound"):
        return ["basis", "step_mix", "roofline"]
    if name == CAPACITY.name and rep.kv is not None:
        return ["kv"]
    if name == "interconnect-bound" and rep.collectives is not None:
        return ["collectives"]
    if name == "bubble-bound":
        return ["bubbles", "p2p"]
    if name == "routing-bound" and rep.moe is not None:
        return ["moe"]
    return []


def _advice(rule: RegimeRule, rep: Reports) -> list[str]:
    """The rule's advice for the run's device, sharpened by the layout (the paper's decision
    framework) and the execution mode read from the run."""
    run = rep.context.execution if rep.context else None
    extra: list[str] = []
    if run is not None and run.device == "cpu":
        if rule.name == "host-bound" and run.mode == "eager":
            extra.append(CPU_EAGER.format(source=run.source))
        if rule.name in ("compute-bound", "hbm-bound") and rep.dtype == "bfloat16":
            extra.append(CPU_BF16)
        return [*(rule.cpu_advice or rule.advice), *extra]
    dp, tp = rep.layout.dp, rep.layout.tp
    if rule.name == "host-bound" and run is not None and run.graphs is False:
        extra.append(GRAPHS_OFF.format(source=run.source))
    if rule.name == CAPACITY.name:
        if dp > 1:
            extra.append(
                f"This run is DP={dp}: every replica holds a full copy of the weights, so "
                "its KV cache is what is left over — the capacity trap. Fewer replicas with "
                "higher TP pool that memory into KV blocks."
            )
        elif tp == 1:
            extra.append(
                "At TP=1 the weights and the KV cache share one device: TP=2 "
                "halves the weights per device and frees memory for KV blocks."
            )
    elif rule.name == "interconnect-bound" and tp > 1:
        extra.append(
            "MoE: a hybrid layout (EP for experts, DP attention) cuts all-reduce volume."
            if rep.moe_model
            else f"At TP={tp} on a dense model: fewer TP ranks per replica (TP inside one "
            "NVLink domain) with more DP replicas, or PP across nodes."
        )
    return [*rule.advice, *extra]
