"""One window per run: the span in which every rank was profiled.

Ranks' profilers start and stop at slightly different times (a pipeline stage may stop long
before the next one: its receive waits after that are not a bubble of the pipeline, only of
the profile). Every rank of a run is therefore analysed over the **common window**, from the
latest own-window start to the earliest own-window end across ranks (a rank's own window:
``analyzers.rank.attribute.own_window``). Each rank keeps its own window next to the analysed one
(``RankResult.own_window_start_ns`` / ``own_window_ns``), and the run warns when a rank's own
window is longer than the common one by more than ``WINDOW_TOLERANCE`` of it (the regime
table). Where the own windows do not overlap at all there is no common window: each rank is
analysed over its own, and the run says so. A run of one rank is analysed over its own window.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracekit.core.analysis import RankResult
from tracekit.core.regime_table import COMPILE_SHARE, WINDOW_TOLERANCE

Window = tuple[int, int]  # [start, end) in ns

#: an own window longer than the common one by more than this share of it is a warning
#: share of a rank's window spent compiling (torch.compile / dynamo) above which a run says so


def common_window(own: Sequence[Window]) -> Window | None:
    """Latest start .. earliest end over the ranks' own windows; None for fewer than two
    ranks or where they do not overlap."""
    if len(own) < 2:
        return None
    lo, hi = max(s for s, _ in own), min(e for _, e in own)
    return (lo, hi) if hi > lo else None


def window_warnings(ranks: Sequence[RankResult]) -> list[str]:
    """The run's warnings about its ranks' own windows against the analysed one."""
    own: list[Window] = []
    for r in ranks:
        if r.own_window_start_ns is None or r.own_window_ns is None:
            return []  # an Analysis written before own windows were kept
        own.append((r.own_window_start_ns, r.own_window_start_ns + r.own_window_ns))
    common = common_window(own)
    if len(own) < 2:
        return []
    if common is None:
        first = min(s for s, _ in own)
        shown = ", ".join(
            f"{r.label} {_ms(s - first)}–{_ms(e - first)} ms"
            for r, (s, e) in zip(ranks, own, strict=True)
        )
        return [
            f"the ranks' profiled windows do not overlap ({shown}, from the earliest start): "
            "no common window, each rank is analysed over its own"
        ]
    lo, hi = common
    wide = [
        f"{r.label} {_ms(e - s)} ms ({_ms(lo - s)} ms before it, {_ms(e - hi)} ms after)"
        for r, (s, e) in zip(ranks, own, strict=True)
        if (e - s) - (hi - lo) > WINDOW_TOLERANCE * (hi - lo)
    ]
    if not wide:
        return []
    return [
        f"ranks were profiled over different windows: every rank is analysed over the common "
        f"window ({_ms(hi - lo)} ms, in which all were profiled); own windows more than "
        f"{WINDOW_TOLERANCE:.0%} longer: " + ", ".join(wide)
    ]


def compile_warnings(ranks: Sequence[RankResult]) -> list[str]:
    """Run-time compilation inside the window: real host time, but a one-off, not the run."""
    out = []
    for r in ranks:
        ns = r.families.get("compile", 0)
        if r.window_ns and ns > COMPILE_SHARE * r.window_ns:
            out.append(
                f"{r.label}: torch.compile ran inside the profiled window ({_ms(ns)} ms, "
                f"{ns / r.window_ns:.0%} of it, counted as host): a one-off (a new shape, a "
                "recompile), not the steady run; more warm-up steps move the window past it"
            )
    return out


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f}"
