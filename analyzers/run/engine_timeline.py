"""Engine stage: the scheduler / KV-cache timeline from a capture's ``steps/`` records.

Each record is one engine step (or, without ``steps/``, one of vLLM's logged stats samples,
standing for its interval: ``analyzers.read.vllm_log``). A step lasts until that engine's next
step starts; the last step of each engine is taken to last the median step gap. From those
durations: time-weighted KV-cache usage and batch sizes, the time the KV cache was near full while
requests waited (the paper's capacity-trap signal), preemptions, and a timeline of at most
``TIMELINE_POINTS`` points for reports and plots. The figures cover the whole run, not only
the profiled window; means and shares leave out each engine's cold first step and long gaps
(``analyzers.run.step_flags``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from analyzers.read.vllm_log import SOURCE, LogRecord
from analyzers.run.step_flags import flag_steps
from tracekit.core.analysis import EngineStats, TimelinePoint
from tracekit.core.regime_table import IDLE_GAP, KV_FULL
from tracekit.core.rundir import StepRecord

TIMELINE_POINTS: Final = 48


def engine_stats(records: Sequence[StepRecord]) -> EngineStats | None:
    if not records:
        return None
    ts = np.array([r.ts_ns for r in records], dtype=np.int64)
    engine = np.array([r.engine for r in records], dtype=np.int64)
    kv = np.array([r.kv_usage for r in records], dtype=np.float64)
    running = np.array([r.running for r in records], dtype=np.int64)
    waiting = np.array([r.waiting for r in records], dtype=np.int64)
    preempt = np.array([r.preemptions for r in records], dtype=np.int64)
    logged = [r for r in records if isinstance(r, LogRecord)]
    dur = step_durations(records)
    total = int(dur.sum())
    flagged, _ = flag_steps(records, dur)
    counted = np.where(flagged, 0, dur)
    full_waiting = (kv >= KV_FULL) & ((waiting > 0) | (preempt > 0)) & ~flagged
    kept = int(counted.sum())
    weights = counted / kept if kept else (~flagged) / max(int((~flagged).sum()), 1)
    span = int(ts.max() - ts.min() + (dur[ts.argmax()] if len(dur) else 0))
    return EngineStats(
        engines=len(np.unique(engine)),
        steps=len(records),
        span_ns=span,
        step_time_ns=total,
        preemptions=int(preempt.sum()),
        kv_usage_max=float(kv.max()),
        kv_usage_mean=float((kv * weights).sum()),
        running_max=int(running.max()),
        running_mean=float((running * weights).sum()),
        waiting_max=int(waiting.max()),
        waiting_share=float(weights[waiting > 0].sum()),
        kv_full_waiting_ns=int(dur[full_waiting].sum()),
        kv_full_waiting_share=float(weights[full_waiting].sum()),
        prefill_tokens=sum(r.prefill_tokens for r in records),
        decode_tokens=sum(r.decode_tokens for r in records),
        timeline=_timeline(ts, kv, running, waiting, preempt),
        source=SOURCE if logged else "steps/",
        preemptions_measured=not logged or any(r.preemptions_logged for r in logged),
        excluded_steps=int(flagged.sum()),
        excluded_ns=int(dur[flagged].sum()),
    )


def step_durations(records: Sequence[StepRecord]) -> np.ndarray:
    """Per record: until the same engine's next step; its last step lasts the median gap.

    The one step-duration rule: engine figures, KV stalls, throughput and calibration use it."""
    return _durations(records)[0]


def busy_durations(records: Sequence[StepRecord]) -> np.ndarray:
    """``step_durations`` with every gap over ``IDLE_GAP`` × its engine's median gap counted
    as one median gap (idle time or capture overhead, not engine work)."""
    dur, median = _durations(records)
    return np.where(dur <= IDLE_GAP * median, dur, median)


def _durations(records: Sequence[StepRecord]) -> tuple[np.ndarray, np.ndarray]:
    """Per record: its duration, and its engine's median gap."""
    ts = np.array([r.ts_ns for r in records], dtype=np.int64)
    engine = np.array([r.engine for r in records], dtype=np.int64)
    dur = np.zeros(len(ts), dtype=np.int64)
    median = np.zeros(len(ts), dtype=np.int64)
    for eng in np.unique(engine):
        rows = np.flatnonzero(engine == eng)
        rows = rows[np.argsort(ts[rows], kind="stable")]
        gaps = np.diff(ts[rows])
        mid = int(np.median(gaps)) if len(gaps) else 0
        dur[rows[:-1]] = gaps
        dur[rows[-1]] = mid
        median[rows] = mid
    return dur, median


def _timeline(
    ts: np.ndarray, kv: np.ndarray, running: np.ndarray, waiting: np.ndarray, preempt: np.ndarray
) -> list[TimelinePoint]:
    """Per equal time bin: peak KV usage, running and waiting counts, and preemptions."""
    lo, hi = int(ts.min()), int(ts.max()) + 1
    bins = min(TIMELINE_POINTS, len(ts))
    index = ((ts - lo) * bins // max(hi - lo, 1)).astype(np.int64)
    points = []
    for b in range(bins):
        rows = index == b
        if not rows.any():  # no step in this bin: the engine was idle
            points.append(TimelinePoint(lo + (hi - lo) * b // bins, 0.0, 0, 0, 0))
            continue
        points.append(
            TimelinePoint(
                ts_ns=lo + (hi - lo) * b // bins,
                kv_usage=float(kv[rows].max()),
                running=int(running[rows].max()),
                waiting=int(waiting[rows].max()),
                preemptions=int(preempt[rows].sum()),
            )
        )
    return points
