"""Run-level stage: the first regime verdict from bucket shares (table in tracekit.regimes)."""

from __future__ import annotations

from collections.abc import Sequence

from tracekit.analysis import RankResult, Regime
from tracekit.buckets import BUCKETS, HOST, IDLE
from tracekit.regimes import NOT_ASSESSED, REGIME_RULES


def verdict(ranks: Sequence[RankResult], basis: str) -> Regime:
    window = sum(r.window_ns for r in ranks)
    totals = {k: sum(r.buckets[k] for r in ranks) for k in BUCKETS}
    share = {k: (v / window if window else 0.0) for k, v in totals.items()}
    scores = {
        rule.name: round(sum(share[k] for k in rule.buckets) / rule.threshold, 3)
        for rule in REGIME_RULES
    }
    ranked = sorted(REGIME_RULES, key=lambda r: scores[r.name], reverse=True)
    best = ranked[0]
    evidence = [
        f"{'+'.join(best.buckets)} holds {sum(share[k] for k in best.buckets):.1%} of the "
        f"analysed time over {len(ranks)} rank(s) (threshold {best.threshold:.0%}, "
        f"score {scores[best.name]:.2f})",
    ]
    if scores[best.name] < 1:
        evidence.append("no regime reaches its threshold: this is the strongest signal only")
    if best.name in ("compute-bound", "hbm-bound"):
        evidence.append(f"compute vs HBM split: {basis}")
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
        not_assessed=dict(NOT_ASSESSED),
    )
