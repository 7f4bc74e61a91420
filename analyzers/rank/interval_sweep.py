"""One interval sweep that turns overlapping, levelled intervals into an exact partition.

Each interval carries a *level*; where intervals of several levels overlap, the lowest level
wins that stretch of time. The result partitions ``[lo, hi)`` exactly: the exclusive times of
all levels plus the uncovered time sum to ``hi - lo`` in integer nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Partition:
    bounds: I64  # sorted segment boundaries, lo..hi
    winner: npt.NDArray[np.int32]  # level owning each segment, -1 where nothing is live
    exclusive_ns: I64  # per level: time it owns
    active_ns: I64  # per level: time any of its intervals is live (owned or hidden)
    uncovered_ns: int

    @property
    def span_ns(self) -> int:
        return int(self.bounds[-1] - self.bounds[0]) if len(self.bounds) else 0


def sweep(
    start: I64, end: I64, level: npt.NDArray[np.integer], n_levels: int, lo: int, hi: int
) -> Partition:
    """Partition ``[lo, hi)`` among intervals ``[start, end)`` by ascending ``level``."""
    if hi < lo:
        raise ValueError(f"empty window: hi {hi} < lo {lo}")
    s = np.clip(start, lo, hi)
    e = np.clip(end, lo, hi)
    keep = e > s
    s, e, lv = s[keep], e[keep], np.asarray(level)[keep].astype(np.int64)
    bounds = _sorted_unique(np.concatenate([s, e, np.array([lo, hi], dtype=np.int64)]))
    nseg = len(bounds) - 1
    seg_len = np.diff(bounds)
    winner = np.full(nseg, -1, dtype=np.int32)
    exclusive = np.zeros(n_levels, dtype=np.int64)
    active = np.zeros(n_levels, dtype=np.int64)
    if nseg > 0 and len(s):
        i_start = np.searchsorted(bounds, s)
        i_end = np.searchsorted(bounds, e)
        order = np.argsort(lv, kind="stable")
        lv_sorted = lv[order]
        cuts = np.searchsorted(lv_sorted, np.arange(n_levels + 1))
        for lvl in range(n_levels):
            rows = order[cuts[lvl] : cuts[lvl + 1]]
            if not len(rows):
                continue
            depth = np.cumsum(
                np.bincount(i_start[rows], minlength=nseg + 1)
                - np.bincount(i_end[rows], minlength=nseg + 1)
            )[:nseg]
            live = depth > 0
            active[lvl] = int(seg_len[live].sum())
            mine = live & (winner < 0)
            winner[mine] = lvl
            exclusive[lvl] = int(seg_len[mine].sum())
    uncovered = int(seg_len[winner < 0].sum()) if nseg > 0 else 0
    return Partition(bounds, winner, exclusive, active, uncovered)


def _sorted_unique(values: I64) -> I64:
    """Sort-then-mask unique: numpy 2.x's hash-based ``np.unique`` is far slower on int64."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
