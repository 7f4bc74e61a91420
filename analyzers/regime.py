"""Run-level stage: the regime verdict from bucket shares and engine stats (tracekit.regimes)."""

from __future__ import annotations

from collections.abc import Sequence

from tracekit.analysis import EngineStats, RankResult, Regime
from tracekit.buckets import BUCKETS, HOST, IDLE
from tracekit.regimes import CAPACITY, KV_SIGNAL, NOT_ASSESSED_CAPACITY, REGIME_RULES, RegimeRule


def verdict(ranks: Sequence[RankResult], basis: str, engine: EngineStats | None = None) -> Regime:
    window = sum(r.window_ns for r in ranks)
    totals = {k: sum(r.buckets[k] for r in ranks) for k in BUCKETS}
    share = {k: (v / window if window else 0.0) for k, v in totals.items()}
    rules: list[RegimeRule] = list(REGIME_RULES)
    signal = {r.name: sum(share[k] for k in r.buckets) for r in rules}
    not_assessed = {}
    if engine is None:
        not_assessed[CAPACITY.name] = NOT_ASSESSED_CAPACITY
    else:
        rules.append(CAPACITY)
        signal[CAPACITY.name] = engine.kv_full_waiting_share
    scores = {r.name: round(signal[r.name] / r.threshold, 3) for r in rules}
    ranked = sorted(rules, key=lambda r: scores[r.name], reverse=True)
    best = ranked[0]
    what = "+".join(best.buckets) if best.buckets else KV_SIGNAL
    where = (
        f"of engine step time over {engine.engines} engine(s)"
        if not best.buckets and engine
        else f"of the analysed time over {len(ranks)} rank(s)"
    )
    evidence = [
        f"{what}: {signal[best.name]:.1%} {where} (threshold {best.threshold:.0%}, "
        f"score {scores[best.name]:.2f})"
    ]
    if scores[best.name] < 1:
        evidence.append("no regime reaches its threshold: this is the strongest signal only")
    if best.name in ("compute-bound", "hbm-bound"):
        evidence.append(f"compute vs HBM split: {basis}")
    if engine is not None:
        evidence.append(
            f"KV cache: peak {engine.kv_usage_max:.0%}, mean {engine.kv_usage_mean:.0%}"
            f"; running batch peak {engine.running_max}; requests waiting "
            f"{engine.waiting_share:.0%} of the time; {engine.preemptions} "
            "preemption(s)"
        )
    if share[IDLE] > 0.3:
        evidence.append(
            f"device idle with no traced host activity: {share[IDLE]:.1%} of the "
            "window (waiting for requests, or untraced work)"
        )
    if best.name != "host-bound" and share[HOST] > 0.1:
        evidence.append(f"host overhead: {share[HOST]:.1%} of the window")
    runners = [f"{r.name} (score {scores[r.name]:.2f})" for r in ranked[1:3] if scores[r.name] > 0]
    return Regime(
        name=best.name,
        label=best.label,
        scores=scores,
        evidence=evidence,
        advice=list(best.advice),
        runners_up=runners,
        not_assessed=not_assessed,
    )
