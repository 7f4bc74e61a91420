"""The steady window: the engine steps after warm-up and ramp, before drain.

A profiled window often opens on the run's first steps (the first prompts, compilation, cold
caches) and on a batch still filling as requests arrive, and closes on a batch emptying as they
finish. None of that is the run's steady state, and averaged in, it moves every figure. The
window is chosen per engine (DP replica) from its steps' composition in the whole window: the
batch (requests per step), the prefill / decode mix and the step time, by the thresholds of
``tracekit.core.regime_table`` (``STEADY_*``):

1. **plateau**: the batch of the busiest quarter of the steps (``STEADY_PLATEAU_PERCENTILE``);
   a step is on it when its batch is at least ``STEADY_BATCH_SHARE`` of that;
2. **drain**: the steps after the last one on the plateau;
3. **warm-up and ramp**: the steps before the first one that is on the plateau, is not
   prefill-heavy (prefill above ``STEADY_PREFILL_SHARE`` of its tokens, where the window
   decodes at all) and is not slow (over ``STEADY_SLOW_FACTOR`` × the plateau's median step).
   The leading run of prefill-heavy or slow steps is the warm-up, the rest the ramp;
4. what is left must hold ``STEADY_MIN_STEPS`` steps, else the whole window is analysed.

Steps come from vLLM's step annotations in the traces (one annotating rank per DP replica;
on GPU ranks each step spans the device work it launched: ``roofline_stage.step_windows``),
else from the capture's per-step records (``steps/``: a step runs from its record to the
next). Where the engines disagree, the run's window is where their steady windows overlap.
Where no step is known (most traces not from vLLM) the whole window is analysed, and the
Analysis says why (``SteadyState``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec
import numpy as np

from analyzers.rank.roofline_stage import step_windows
from analyzers.rank.step_annotations import find_steps
from analyzers.read.vllm_log import LogRecord
from analyzers.run.window import Window
from tracekit.core.regime_table import (
    STEADY_BATCH_SHARE,
    STEADY_MIN_STEPS,
    STEADY_PLATEAU_PERCENTILE,
    STEADY_PREFILL_SHARE,
    STEADY_SLOW_FACTOR,
)
from tracekit.core.rundir import StepRecord
from tracekit.core.steady_state import EngineSteady, SteadyState
from tracekit.core.trace_model import Events, NameTable

Asked = Literal["steady", "whole"]


@dataclass(frozen=True)
class StepSpan:
    """One engine step: when it ran, its batch (requests) and its tokens."""

    start_ns: int
    end_ns: int
    batch: int
    prefill_tokens: int
    decode_tokens: int


@dataclass(frozen=True)
class EngineSteps:
    """One engine's steps over the whole window, and whose they are."""

    engine: int
    source: str
    spans: tuple[StepSpan, ...]
    #: pipeline stages: a pipeline of pp stages keeps pp batches in flight, and its steps
    #: take turns between them, so their sizes alternate (2, 4, 2, 4 …)
    interleave: int = 1


def annotation_spans(events: Events, names: NameTable, device: str) -> tuple[StepSpan, ...]:
    """A rank's steps from vLLM's step annotations (on GPU ranks: their device work)."""
    steps = find_steps(events, names)
    if not steps:
        return ()
    starts, ends = step_windows(events, steps, device)
    return tuple(
        StepSpan(
            int(a),
            int(z),
            s.context_requests + s.generation_requests,
            s.context_tokens,
            s.generation_tokens,
        )
        for s, a, z in zip(steps, starts.tolist(), ends.tolist(), strict=True)
    )


def record_spans(records: Sequence[StepRecord], whole: Window) -> list[EngineSteps]:
    """Each engine's steps in ``whole`` from its per-step records (not vLLM's log lines: one
    sample per logging interval is no step): a step runs from its record to the next."""
    lo, hi = whole
    by_engine: dict[int, list[StepRecord]] = {}
    for r in records:
        if not isinstance(r, LogRecord):
            by_engine.setdefault(r.engine, []).append(r)
    out = []
    for engine, recs in sorted(by_engine.items()):
        ends = [r.ts_ns for r in recs[1:]] + [max(hi, recs[-1].ts_ns)]
        spans = tuple(
            StepSpan(r.ts_ns, z, r.running, r.prefill_tokens, r.decode_tokens)
            for r, z in zip(recs, ends, strict=True)
            if lo <= r.ts_ns < hi
        )
        if spans:
            out.append(EngineSteps(engine, "steps/ records", spans))
    return out


def inside(spans: Sequence[StepSpan], window: Window) -> tuple[StepSpan, ...]:
    """The steps that overlap ``window`` (as the per-rank steps stage keeps them)."""
    lo, hi = window
    return tuple(s for s in spans if s.start_ns < hi and s.end_ns > lo)


def choose(steps: EngineSteps) -> EngineSteady:
    """The steady run of one engine's steps (``first`` None where there is none)."""
    spans = steps.spans
    n = len(spans)
    batch = _in_flight(np.array([s.batch for s in spans], dtype=np.int64), steps.interleave)
    dur = np.array([s.end_ns - s.start_ns for s in spans], dtype=np.int64)
    pre = np.array([s.prefill_tokens for s in spans], dtype=np.int64)
    tokens = pre + np.array([s.decode_tokens for s in spans], dtype=np.int64)

    def result(first: int | None, last: int | None, reason: str, **counts: int) -> EngineSteady:
        med = int(np.median(dur[first : (last or 0) + 1])) if first is not None else 0
        return EngineSteady(
            engine=steps.engine,
            source=steps.source,
            steps=n,
            first=first,
            last=last,
            warmup=counts.get("warmup", 0),
            ramp=counts.get("ramp", 0),
            drain=counts.get("drain", 0),
            plateau_batch=counts.get("level", 0),
            median_step_ns=med,
            reason=reason,
        )

    if n < STEADY_MIN_STEPS:
        return result(
            None,
            None,
            f"{n} engine step(s) in the window, fewer than {STEADY_MIN_STEPS}: too few to "
            "tell warm-up from a steady state",
        )
    level = int(np.percentile(batch, STEADY_PLATEAU_PERCENTILE, method="inverted_cdf"))
    floor = STEADY_BATCH_SHARE * level
    on = batch >= floor
    heavy = pre > STEADY_PREFILL_SHARE * tokens
    if not (~heavy & (tokens > 0)).any():  # a prefill-only window: prefills are its steady state
        heavy[:] = False
    good = np.flatnonzero(on & ~heavy)
    if not len(good):  # heavy steps are the only ones on the plateau
        return result(
            None,
            None,
            f"every step at the plateau batch ({level}) is prefill-heavy (prefill over "
            f"{STEADY_PREFILL_SHARE:.0%} of its tokens): no steady plateau",
            level=level,
        )
    a, b = int(good[0]), int(np.flatnonzero(on)[-1])
    slow = dur > STEADY_SLOW_FACTOR * np.median(dur[a : b + 1])
    while a <= b and (not on[a] or heavy[a] or slow[a]):
        a += 1
    plateau = f"batch ≥ {math.ceil(floor)} ({STEADY_BATCH_SHARE:.0%} of the plateau's {level})"
    if b - a + 1 < STEADY_MIN_STEPS:
        return result(
            None,
            None,
            f"only {max(b - a + 1, 0)} of {n} steps run at {plateau} after warm-up and ramp, "
            f"fewer than {STEADY_MIN_STEPS}: no steady plateau",
            level=level,
        )
    med = float(np.median(dur[a : b + 1]))
    warm = 0
    while warm < a and (heavy[warm] or dur[warm] > STEADY_SLOW_FACTOR * med):
        warm += 1
    parts = []
    if warm:
        parts.append(f"warm-up: {_steps(0, warm - 1)} ({_warm_words(heavy, dur, warm, med)})")
    if a > warm:
        parts.append(
            f"ramp: {_steps(warm, a - 1)} (batch {batch[warm]} → {batch[a - 1]}, "
            f"before the plateau)"
        )
    if b < n - 1:
        parts.append(f"drain: {_steps(b + 1, n - 1)} (batch {batch[b + 1]} → {batch[-1]})")
    kept = f"steps {a}–{b} of {n} run at {plateau}, median step {med / 1e6:.2f} ms"
    reason = (
        f"{kept}; left out: {'; '.join(parts)}"
        if parts
        else f"{kept}; no warm-up, ramp or drain to leave out"
    )
    return result(a, b, reason, warmup=warm, ramp=a - warm, drain=n - 1 - b, level=level)


def steady_window(
    engines: Sequence[EngineSteps], whole: Window, asked: Asked, ranks: int
) -> tuple[Window, SteadyState]:
    """The window every rank is analysed over, and the record of why: the engines' steady
    windows where ``asked`` is "steady" and they are found and overlap, else ``whole``."""
    lo, hi = whole
    total = sum(len(e.spans) for e in engines)

    def record(
        analysed: Asked, window: Window, steps: int, reason: str, chosen: list[EngineSteady]
    ) -> SteadyState:
        return SteadyState(
            analysed=analysed,
            asked=asked,
            start_ns=window[0],
            ns=window[1] - window[0],
            whole_start_ns=lo,
            whole_ns=hi - lo,
            steps=steps,
            whole_steps=total,
            reason=reason,
            engines=chosen,
        )

    def whole_window(reason: str, chosen: list[EngineSteady], found: Window | None) -> SteadyState:
        state = record("whole", whole, total, reason, chosen)
        if found is None:
            return state
        return msgspec.structs.replace(
            state, steady_start_ns=found[0], steady_ns=found[1] - found[0]
        )

    if not engines:
        return whole, whole_window(NO_STEPS, [], None)
    chosen = [choose(e) for e in engines]
    missing = [c for c in chosen if c.first is None]
    if missing:
        return whole, whole_window(
            "the whole window is analysed: " + _per_engine(missing, len(chosen)), chosen, None
        )
    if all(c.first == 0 and c.last == c.steps - 1 for c in chosen):
        return whole, whole_window(
            "the whole window is analysed, already steady: " + _per_engine(chosen, 1),
            chosen,
            None,
        )
    start, end = lo, hi
    for e, c in zip(engines, chosen, strict=True):
        assert c.first is not None and c.last is not None
        start = max(start, e.spans[c.first].start_ns)
        end = min(end, e.spans[c.last].end_ns)
    if end <= start:
        return whole, whole_window(
            "the whole window is analysed: the engines' steady windows do not overlap ("
            + _per_engine(chosen, 1)
            + ")",
            chosen,
            None,
        )
    chosen = [_within(e, c, (start, end)) for e, c in zip(engines, chosen, strict=True)]
    steps = sum(len(inside(e.spans, (start, end))) for e in engines)
    span = f"{(end - start) / 1e6:.1f} ms of the whole window's {(hi - lo) / 1e6:.1f} ms"
    every = "one rank" if ranks == 1 else f"all {ranks} ranks"
    if asked == "whole":
        return whole, whole_window(
            f"the whole window is analysed (--whole-window); the steady window would be {span} "
            f"({_per_engine(chosen, 1)})",
            chosen,
            (start, end),
        )
    state = record(
        "steady",
        (start, end),
        steps,
        f"the steady window ({span}, {every}) is analysed: " + _per_engine(chosen, len(chosen)),
        chosen,
    )
    return (start, end), state


NO_STEPS = (
    "the whole window is analysed: no engine steps are known (no vLLM step annotation in the "
    "traces, no steps/ records in the window), so there is no step composition to find a "
    "steady state in"
)


def _within(e: EngineSteps, c: EngineSteady, window: Window) -> EngineSteady:
    """An engine's chosen steps narrowed to the run's window (where engines disagree)."""
    lo, hi = window
    idx = [i for i, s in enumerate(e.spans) if s.start_ns < hi and s.end_ns > lo]
    if not idx or (idx[0], idx[-1]) == (c.first, c.last):
        return c
    note = f" (narrowed to steps {idx[0]}–{idx[-1]}, where every engine is steady)"
    return msgspec.structs.replace(c, first=idx[0], last=idx[-1], reason=c.reason + note)


def _per_engine(chosen: Sequence[EngineSteady], engines: int) -> str:
    if engines == 1 and len(chosen) == 1:
        c = chosen[0]
        return f"{c.reason} ({c.source})"
    return "; ".join(f"dp{c.engine}: {c.reason} ({c.source})" for c in chosen)


def _steps(first: int, last: int) -> str:
    return f"step {first}" if first == last else f"steps {first}–{last}"


def _warm_words(heavy: np.ndarray, dur: np.ndarray, warm: int, med: float) -> str:
    words = []
    n_heavy = int(heavy[:warm].sum())
    if n_heavy:
        words.append(
            f"{n_heavy} prefill-heavy (prefill over {STEADY_PREFILL_SHARE:.0%} of its tokens)"
        )
    n_slow = int((dur[:warm] > STEADY_SLOW_FACTOR * med).sum())
    if n_slow:
        words.append(
            f"{n_slow} slow (over {STEADY_SLOW_FACTOR:g}× the plateau's median step, up to "
            f"{int(dur[:warm].max()) / 1e6:.1f} ms)"
        )
    return ", ".join(words)


def _in_flight(batch: np.ndarray, interleave: int) -> np.ndarray:
    """Each step's batch as the largest of the batches around it that take turns with it
    (``interleave`` − 1 steps either side): a pipeline's alternating batches as one level."""
    if interleave <= 1 or not len(batch):
        return batch
    k = interleave - 1
    padded = np.pad(batch, k, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1)
    return np.asarray(windows.max(axis=1), dtype=np.int64)
