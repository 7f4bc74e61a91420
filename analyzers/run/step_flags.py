"""Steps left out of means: the engine's cold first step and long gaps (one documented rule).

A step record lasts until its engine's next step (``analyzers.run.engine_timeline.step_durations``),
so a step also holds whatever the engine did before the next one: compiling and warming up
on its first step, waiting for the next request, writing a trace when the profiler stops.
Those durations are not steady-state work and would dominate time-weighted means (a 2.7 s
first step in a 3.4 s run). The rule, per engine:

* its **first step** is flagged *cold* (compile / warm-up / first batch);
* any other step lasting more than ``OUTLIER_FACTOR`` × the median of the engine's other
  steps (its first step left out of the median) is flagged a *long gap*.

Flagged steps are left out of means and time-weighted shares (``EngineStats``, the capacity
report) and listed in ``RunContext.excluded``; counts, peaks and totals keep every step. An
engine whose steps would all be flagged keeps them all (nothing left to average otherwise).
vLLM's logged stats samples (one per logging interval, not per step) are never flagged.

Trace steps (the profiled window's annotations) use the same factor against the window's own
median: outliers are left out of the window's mean / p50 / p90 (``StepStats.excluded``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from analyzers.read.vllm_log import LogRecord
from tracekit.core.regime_table import OUTLIER_FACTOR
from tracekit.core.run_context import FlaggedStep, StepExclusions
from tracekit.core.rundir import StepRecord

LISTED: Final = 8  # flagged steps listed in the Analysis (the longest first)
COLD: Final = "first step (cold: compile / warm-up)"
RULE: Final = (
    f"each engine's first step (cold), and steps longer than {OUTLIER_FACTOR:g}× the median "
    "of the engine's other steps (long gaps: idle, trace export, …), are left out of means "
    "and time-weighted figures"
)


def flag_steps(
    records: Sequence[StepRecord], durations: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.bool_], list[str]]:
    """Per record: flagged, and why ("" when counted). ``durations`` as step_durations."""
    flagged = np.zeros(len(records), dtype=bool)
    reasons = [""] * len(records)
    if not records or isinstance(records[0], LogRecord):
        return flagged, reasons
    ts = np.array([r.ts_ns for r in records], dtype=np.int64)
    engine = np.array([r.engine for r in records], dtype=np.int64)
    for eng in np.unique(engine):
        rows = np.flatnonzero(engine == eng)
        rows = rows[np.argsort(ts[rows], kind="stable")]
        if len(rows) < 2:
            continue
        rest = durations[rows[1:]]
        median = float(np.median(rest))
        mine = {int(rows[0]): COLD}
        for row in rows[1:].tolist():
            d = int(durations[row])
            if median > 0 and d > OUTLIER_FACTOR * median:
                mine[row] = f"long gap: {d / median:.0f}× the median step ({median / 1e6:.2f} ms)"
        if len(mine) == len(rows):
            continue  # nothing would be left to average
        for row, why in mine.items():
            flagged[row], reasons[row] = True, why
    return flagged, reasons


def exclusions(
    records: Sequence[StepRecord],
    durations: npt.NDArray[np.int64],
    flagged: npt.NDArray[np.bool_],
    reasons: Sequence[str],
) -> StepExclusions:
    """The flagged steps, for the Analysis: how many, how long, the longest listed."""
    total = int(durations.sum())
    rows = sorted(np.flatnonzero(flagged).tolist(), key=lambda i: -int(durations[i]))
    excluded = int(durations[flagged].sum())
    return StepExclusions(
        rule=RULE,
        steps=len(rows),
        total_ns=excluded,
        share=round(excluded / total, 6) if total else 0.0,
        listed=[
            FlaggedStep(records[i].engine, records[i].ts_ns, int(durations[i]), reasons[i])
            for i in rows[:LISTED]
        ],
    )


def window_outliers(durations: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Trace steps longer than OUTLIER_FACTOR × the window's median step (none flagged when
    that would leave nothing)."""
    out = np.zeros(len(durations), dtype=bool)
    if len(durations) < 2:
        return out
    median = float(np.median(durations))
    if median > 0:
        out = durations > OUTLIER_FACTOR * median
    return out if not out.all() else np.zeros(len(durations), dtype=bool)
