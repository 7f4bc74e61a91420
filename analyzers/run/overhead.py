"""The profiled window against the whole run: which step records the trace covers, and what
the profiler cost.

**Matching** (per DP replica, one annotating rank, as ``step_stats`` counts): each trace step
``execute_context_N(T)_generation_M(G)`` is matched to the replica engine's step record
(``steps/``) with the same prefill / decode tokens (T, G), the nearest at or before the step's
start among the last ``LOOKBACK`` records (a record is stamped when its step is scheduled,
just before the workers run it; pipeline parallelism keeps a few in flight). The records
from the first to the last matched one are the **profiled window**.

**Overhead**: a profiled record's duration (until its engine's next step) is set against
the median duration of *unprofiled* records of the same shape (prefill tokens, decode
tokens). Left out on both sides: flagged steps (the cold first step, long gaps:
``analyzers.run.step_flags``) and the one record on each side of the window (the profiler starts
and stops, and writes its trace, in them). The estimate is the median over the pairs of
profiled / unprofiled duration (``ratio``, with the number of pairs); ``added_share``
= max(0, 1 − 1/ratio) is the share of the window's step time that is the profiler's own cost — time
the buckets count as host. Warm-up left inside the window counts in it too. Without pairs the
figure is *not measured* and says why.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from analyzers.read.run_config import execution
from analyzers.read.vllm_log import LogRecord
from analyzers.run.engine_timeline import step_durations
from analyzers.run.step_flags import exclusions, flag_steps
from tracekit.core.analysis import RankResult, Step
from tracekit.core.run_context import Figure, ProfilerOverhead, RunContext
from tracekit.core.rundir import StepRecord

LOOKBACK: Final = 8  # records searched back from a trace step's start for its own record
RATIO_UNIT: Final = "× (profiled / unprofiled step duration, median over pairs)"
SHARE_UNIT: Final = "share of the profiled window's step time (1 − 1/ratio)"
SOURCE: Final = "steps/ durations (whole run); profiled window matched from the trace"
Shape = tuple[int, int]


def window_records(records: Sequence[StepRecord], steps: Sequence[Step], engine: int) -> list[int]:
    """Indices (into ``records``) of the records the trace's steps matched, in order."""
    mine = sorted(
        (i for i, r in enumerate(records) if r.engine == engine), key=lambda i: records[i].ts_ns
    )
    ts = [records[i].ts_ns for i in mine]
    taken: set[int] = set()
    for step in sorted(steps, key=lambda s: s.start_ns):
        at = bisect_right(ts, step.start_ns) - 1
        for j in range(at, max(at - LOOKBACK, -1), -1):
            r = records[mine[j]]
            if mine[j] in taken or (r.prefill_tokens, r.decode_tokens) != (
                step.context_tokens,
                step.generation_tokens,
            ):
                continue
            taken.add(mine[j])
            break
    return sorted(taken, key=lambda i: records[i].ts_ns)


def profiled_mask(
    records: Sequence[StepRecord], ranks: Sequence[RankResult]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], int]:
    """Per record: inside the profiled window; next to it (start / stop); and how many trace
    steps (one annotating rank per DP replica) the window holds."""
    inside = np.zeros(len(records), dtype=bool)
    beside = np.zeros(len(records), dtype=bool)
    chosen: dict[int | None, RankResult] = {}
    for rank in ranks:
        if rank.steps:
            chosen.setdefault(rank.identity.dp, rank)
    window_steps = sum(len(r.steps) for r in chosen.values())
    for dp, rank in chosen.items():
        engine = dp or 0
        matched = window_records(records, rank.steps, engine)
        if not matched:
            continue
        mine = sorted(
            (i for i, r in enumerate(records) if r.engine == engine),
            key=lambda i: records[i].ts_ns,
        )
        lo, hi = mine.index(matched[0]), mine.index(matched[-1])
        inside[mine[lo : hi + 1]] = True
        beside[[mine[k] for k in (lo - 1, hi + 1) if 0 <= k < len(mine)]] = True
    return inside, beside, window_steps


def profiler_overhead(
    records: Sequence[StepRecord], ranks: Sequence[RankResult]
) -> ProfilerOverhead:
    """Profiled against unprofiled steps of the same shape (module docstring)."""
    reason = _unmeasurable(records, ranks)
    if reason is not None:
        return _not_measured(reason)
    dur = step_durations(records)
    flagged, _ = flag_steps(records, dur)
    inside, beside, _ = profiled_mask(records, ranks)
    if not inside.any():
        return _not_measured(
            "no trace step matched a steps/ record (same prefill / decode tokens, at or "
            "before the step's start)"
        )
    shape = [(r.prefill_tokens, r.decode_tokens) for r in records]
    profiled = np.flatnonzero(inside & ~flagged)
    unprofiled = np.flatnonzero(~inside & ~beside & ~flagged)
    base: dict[Shape, list[int]] = {}
    for i in unprofiled.tolist():
        base.setdefault(shape[i], []).append(int(dur[i]))
    medians = {k: float(np.median(v)) for k, v in base.items()}
    ratios, used = [], set()
    for i in profiled.tolist():
        ref = medians.get(shape[i])
        if ref:
            ratios.append(int(dur[i]) / ref)
            used.add(shape[i])
    counts = {"profiled_steps": len(profiled), "unprofiled_steps": len(unprofiled)}
    if not ratios:
        return _not_measured(
            "no unprofiled step has the shape (prefill / decode tokens) of a profiled one: "
            "the capture profiled every step, or the rest of the run ran other batches",
            **counts,
        )
    ratio = float(np.median(ratios))
    note = (
        f"median over {len(ratios)} profiled step(s) of {len(used)} shape(s), each against "
        f"the median of the unprofiled steps of its shape; warm-up left in the window counts "
        "in it"
    )
    return ProfilerOverhead(
        ratio=Figure(value=round(ratio, 4), unit=RATIO_UNIT, source=SOURCE, note=note),
        added_share=Figure(
            value=round(max(0.0, 1 - 1 / ratio), 4),
            unit=SHARE_UNIT,
            source=SOURCE,
            note="counted as host time in the buckets (the profiler runs on the host)"
            if ratio > 1
            else "none measured: profiled steps were not slower than unprofiled ones",
        ),
        pairs=len(ratios),
        shapes=len(used),
        **counts,
    )


def _unmeasurable(records: Sequence[StepRecord], ranks: Sequence[RankResult]) -> str | None:
    if not records:
        return (
            "no steps/ records: the whole run's steps are not known (a tracekit capture "
            "writes them)"
        )
    if isinstance(records[0], LogRecord):
        return "vLLM's logged stats are one sample per interval, not per step"
    if not any(r.steps for r in ranks):
        return "no engine step annotations (execute_context_N(T)_generation_M(G)) in the trace"
    return None


def _not_measured(
    reason: str, profiled_steps: int = 0, unprofiled_steps: int = 0
) -> ProfilerOverhead:
    return ProfilerOverhead(
        ratio=Figure(value=None, unit=RATIO_UNIT, source=SOURCE, note=f"not measured: {reason}"),
        added_share=Figure(value=None, unit=SHARE_UNIT, source=SOURCE, note="not measured"),
        pairs=0,
        shapes=0,
        profiled_steps=profiled_steps,
        unprofiled_steps=unprofiled_steps,
    )


def run_context(
    records: Sequence[StepRecord],
    ranks: Sequence[RankResult],
    manifest: dict[str, Any] | None,
    device: Literal["gpu", "cpu"],
) -> RunContext:
    """The profiled window against the whole run, the profiler's cost, the steps left out of
    means and the execution mode, for the Analysis."""
    dur = step_durations(records) if records else np.zeros(0, dtype=np.int64)
    stepped = bool(records) and not isinstance(records[0], LogRecord)
    excluded = None
    run_ns = None
    if stepped:
        flagged, reasons = flag_steps(records, dur)
        excluded = exclusions(records, dur, flagged, reasons)
        ts = np.array([r.ts_ns for r in records], dtype=np.int64)
        run_ns = int(ts.max() - ts.min() + dur[int(ts.argmax())])
    _, _, window_steps = profiled_mask(records, ranks)
    return RunContext(
        window_steps=window_steps,
        window_ns=max((r.window_ns for r in ranks), default=0),
        run_steps=len(records) if stepped else None,
        run_ns=run_ns,
        overhead=profiler_overhead(records, ranks),
        excluded=excluded,
        execution=execution(manifest, device),
    )
