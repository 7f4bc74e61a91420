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
    Regime,
    RunnerUp,
    Signal,
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
    RegimeRule,
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
    basis: str,
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
    evidence = _deciding(best.name, ranks, basis, rep)
    if engine is not None:
        preemptions = (
            f"{engine.preemptions} preemption(s)"
            if engine.preemptions_measured
            else "preemptions not measured"
        )
        evidence.append(
            f"KV cache: peak {engine.kv_usage_max:.0%}, mean {engine.kv_usage_mean:.0%}"
            f"; running batch peak {engine.running_max}; requests waiting "
            f"{engine.waiting_share:.0%} of the time; {preemptions} (whole run, {engine.source})"
        )
    if share[IDLE] > IDLE_EVIDENCE:
        evidence.append(
            f"device idle with no traced host activity: {share[IDLE]:.1%} of the "
            "window (waiting for requests, or untraced work)"
        )
    if best.name != "host-bound" and share[HOST] > HOST_EVIDENCE:
        evidence.append(f"host overhead: {share[HOST]:.1%} of the window (trace buckets)")
    added = rep.context.overhead.added_share.value if rep.context else None
    if added and share[HOST] > HOST_EVIDENCE:
        evidence.append(
            f"profiler overhead: ≈{added:.0%} of the profiled window's step time is the "
            "profiler's own cost, counted under host (profiled vs unprofiled steps of the same "
            "shape, steps/)"
        )
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


def _deciding(name: str, ranks: Sequence[RankResult], basis: str, rep: Reports) -> list[str]:
    """The figures behind the winning regime, each naming its source."""
    out: list[str] = []
    if name in ("compute-bound", "hbm-bound"):
        out.append(f"compute vs HBM split: {basis}")
        out += _step_mix(rep.step_stats)
        out += _roofline_lines(ranks)
    elif name == CAPACITY.name and rep.kv is not None:
        out += rep.kv.evidence
    elif name == "interconnect-bound" and rep.collectives is not None:
        out += _collective_lines(rep.collectives)
    elif name == "bubble-bound":
        out += rep.bubbles.evidence if rep.bubbles is not None else []
        if rep.collectives is not None:
            p2p = [k for k in rep.collectives.kinds if k.kind == "p2p"]
            out += _collective_lines(Collectives(kinds=p2p, waits=[], evidence=[]))
    elif name == "routing-bound" and rep.moe is not None:
        out += rep.moe.evidence
    return out


def _step_mix(stats: Sequence[StepStats]) -> list[str]:
    total = next((s.total_ns for s in stats if s.kind == "all"), 0)
    if not total:
        return []
    parts = [
        f"{s.kind} {s.total_ns / total:.0%} ({s.count} steps)"
        for s in stats
        if s.kind != "all" and s.total_ns
    ]
    return ["engine step time: " + ", ".join(parts) + " (trace steps)"]


def _roofline_lines(ranks: Sequence[RankResult]) -> list[str]:
    out: list[str] = []
    for r in ranks:
        roof = r.roofline
        if roof is None or not roof.kinds:
            continue
        for k in roof.kinds:
            if k.kind == "all":
                continue
            achieved = (
                k.model_error
                if k.model_error
                else f"achieved {k.flops_pct:.1f}% of peak FLOP/s, "
                f"{k.bandwidth_pct:.1f}% of peak bandwidth"
            )
            out.append(
                f"{r.label} {k.kind}: {k.compute_steps}/{k.steps} steps compute-bound, "
                f"intensity {k.intensity:.1f} FLOP/byte vs ridge {roof.ridge:.1f}; {achieved} "
                f"({roof.basis}, {roof.device})"
            )
        if len(out) >= 4:
            break
    return out


def _collective_lines(c: Collectives) -> list[str]:
    out = []
    for k in c.kinds:
        line = (
            f"{k.kind}: {k.calls} calls, exposed {k.exposed_ns / 1e6:.2f} ms, overlapped "
            f"{k.overlapped_ns / 1e6:.2f} ms (trace partition)"
        )
        if k.matched:
            line += (
                f"; {k.matched} matched across ranks, skew mean {k.skew_mean_ns / 1e3:.1f} µs,"
                f" max {k.skew_max_ns / 1e3:.1f} µs (call starts)"
            )
        if k.bus_bandwidth is not None:
            line += f"; bus bandwidth {k.bus_bandwidth / 1e9:.2f} GB/s ({k.size_source})"
        out.append(line)
    if c.waits:
        worst = max(c.waits, key=lambda w: w.wait_ns)
        out.append(
            f"most waiting: {worst.label} {worst.wait_ns / 1e6:.2f} ms for the slowest rank; "
            + ", ".join(f"{w.label} last to arrive {w.last_arrivals}×" for w in c.waits)
        )
    return out + c.evidence


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
