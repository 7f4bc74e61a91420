"""The verdict in words: its deciding signal, the figures behind it and its runners-up.

The Analysis holds the verdict as data (``Regime.signal``, ``Regime.evidence`` naming the parts
of the Analysis that support it, ``Regime.runners_up``); every renderer says it with these
functions, so the report and the timeline say the same.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracekit.core.analysis import (
    Analysis,
    Collectives,
    StepStats,
)
from tracekit.core.buckets import HOST, IDLE
from tracekit.core.regime_table import EvidenceKind, Regime, RunnerUp, Signal


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


def evidence_lines(a: Analysis) -> list[str]:
    """Every line of the verdict's evidence: the deciding signal, then each figure behind it
    (each naming its source)."""
    out = signal_lines(a.regime.signal)
    for kind in a.regime.evidence:
        out += _lines(kind, a)
    return out


def runner_up(r: RunnerUp) -> str:
    return f"{r.name} (score {r.score:.2f})"


def runners_up(r: Regime) -> str:
    return ", ".join(runner_up(x) for x in r.runners_up)


def _lines(kind: EvidenceKind, a: Analysis) -> list[str]:
    if kind == "basis":
        return [f"compute vs HBM split: {a.compute_hbm_basis}"]
    if kind == "step_mix":
        return _step_mix(a.step_stats)
    if kind == "roofline":
        return _roofline(a)
    if kind == "kv":
        return list(a.kv.evidence) if a.kv else []
    if kind == "collectives":
        return _collectives(a.collectives) if a.collectives else []
    if kind == "p2p":
        if a.collectives is None:
            return []
        p2p = [k for k in a.collectives.kinds if k.kind == "p2p"]
        return _collectives(Collectives(kinds=p2p, waits=[], evidence=[]))
    if kind == "bubbles":
        return list(a.bubbles.evidence) if a.bubbles else []
    if kind == "moe":
        return list(a.moe.evidence) if a.moe else []
    if kind == "engine":
        return _engine(a)
    share = _shares(a)
    if kind == "idle":
        return [
            f"device idle with no traced host activity: {share[IDLE]:.1%} of the "
            "window (waiting for requests, or untraced work)"
        ]
    if kind == "host":
        return [f"host overhead: {share[HOST]:.1%} of the window (trace buckets)"]
    added = a.context.overhead.added_share.value if a.context else None
    return [
        f"profiler overhead: ≈{added or 0:.0%} of the profiled window's step time is the "
        "profiler's own cost, counted under host (profiled vs unprofiled steps of the same "
        "shape, steps/)"
    ]


def _shares(a: Analysis) -> dict[str, float]:
    window = sum(r.window_ns for r in a.ranks)
    return {k: sum(r.buckets[k] for r in a.ranks) / window if window else 0.0 for k in (IDLE, HOST)}


def _engine(a: Analysis) -> list[str]:
    e = a.engine
    if e is None:
        return []
    preemptions = (
        f"{e.preemptions} preemption(s)" if e.preemptions_measured else "preemptions not measured"
    )
    return [
        f"KV cache: peak {e.kv_usage_max:.0%}, mean {e.kv_usage_mean:.0%}"
        f"; running batch peak {e.running_max}; requests waiting "
        f"{e.waiting_share:.0%} of the time; {preemptions} (whole run, {e.source})"
    ]


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


def _roofline(a: Analysis) -> list[str]:
    out: list[str] = []
    for r in a.ranks:
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


def _collectives(c: Collectives) -> list[str]:
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
