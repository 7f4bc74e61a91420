from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from analyzers.rank.interval_sweep import sweep


def _a(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_priority_and_uncovered() -> None:
    part = sweep(_a(0, 5, 20), _a(10, 15, 25), _a(1, 0, 2), 3, 0, 30)
    assert part.exclusive_ns.tolist() == [10, 5, 5]
    assert part.active_ns.tolist() == [10, 10, 5]
    assert part.uncovered_ns == 10
    assert part.winner.tolist() == [1, 0, 0, -1, 2, -1]


def test_intervals_are_clipped_to_the_window() -> None:
    part = sweep(_a(-10, 90), _a(10, 200), _a(0, 1), 2, 0, 100)
    assert part.exclusive_ns.tolist() == [10, 10]
    assert part.uncovered_ns == 80


@given(
    st.lists(st.tuples(st.integers(-50, 1000), st.integers(0, 300), st.integers(0, 4)), max_size=40)
)
def test_partition_sums_to_window(rows: list[tuple[int, int, int]]) -> None:
    start = np.array([r[0] for r in rows], dtype=np.int64)
    end = start + np.array([r[1] for r in rows], dtype=np.int64)
    level = np.array([r[2] for r in rows], dtype=np.int64)
    part = sweep(start, end, level, 5, 0, 900)
    assert int(part.exclusive_ns.sum()) + part.uncovered_ns == 900
    # brute force on a 1-unit grid
    owner = np.full(900, -1)
    for s, e, lv in sorted(zip(start, end, level, strict=True), key=lambda r: -r[2]):
        owner[min(max(s, 0), 900) : min(max(e, 0), 900)] = lv
    assert [int((owner == lv).sum()) for lv in range(5)] == part.exclusive_ns.tolist()
