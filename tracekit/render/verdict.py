"""The verdict's data in words: its deciding signal and runners-up, as every renderer says them."""

from __future__ import annotations

from tracekit.core.analysis import Regime, RunnerUp, Signal


def signal_lines(s: Signal) -> list[str]:
    """The deciding figure against its threshold, and a caveat when no regime reached one."""
    where = (
        f"of engine step time ({s.source})"
        if s.of == "engine step time"
        else f"of the analysed time over {s.ranks} rank(s) ({s.source})"
    )
    lines = [f"{s.what}: {s.share:.1%} {where} (threshold {s.threshold:.0%}, score {s.score:.2f})"]
    if s.score < 1:
        lines.append("no regime reaches its threshold: this is the strongest signal only")
    return lines


def evidence_lines(r: Regime) -> list[str]:
    """Every line of evidence: the deciding signal, then the figures behind it."""
    return [*signal_lines(r.signal), *r.evidence]


def runner_up(r: RunnerUp) -> str:
    return f"{r.name} (score {r.score:.2f})"


def runners_up(r: Regime) -> str:
    return ", ".join(runner_up(x) for x in r.runners_up)
