"""What an Analysis's figures cover (part of the Analysis schema, ``tracekit.core.analysis``).

A trace covers only the profiled window; a capture's ``steps/`` records cover the whole run.
``RunContext`` sets the two side by side: the profiler's own cost (profiled against
unprofiled steps of the same shape), the whole-run steps left out of means (the cold first
step, long gaps), and how the engine executed (eager or compiled, CUDA graphs), which the
advice reads.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class Figure(msgspec.Struct, frozen=True, kw_only=True):
    """One measured figure: ``value`` in ``unit`` from ``source``; ``value`` None means not
    measured, and ``note`` says why (else how it was measured)."""

    value: float | None
    unit: str
    source: str
    note: str | None = None


class ProfilerOverhead(msgspec.Struct, frozen=True, kw_only=True):
    """The profiler's own cost: profiled against unprofiled engine steps of the same shape
    (prefill and decode tokens), both timed by the whole run's step records (``steps/``)."""

    ratio: Figure  # median over pairs of profiled / unprofiled step duration
    added_share: Figure  # 1 − 1/ratio: share of the window's step time the profiler added
    pairs: int  # profiled steps paired with unprofiled steps of their shape
    shapes: int  # distinct (prefill, decode) token shapes among the pairs
    profiled_steps: int  # steps/ records inside the profiled window (counted ones)
    unprofiled_steps: int  # counted steps/ records outside it (not next to it)


class FlaggedStep(msgspec.Struct, frozen=True):
    engine: int
    ts_ns: int
    dur_ns: int
    reason: str


class StepExclusions(msgspec.Struct, frozen=True, kw_only=True):
    """Whole-run steps left out of means and time-weighted figures, and why."""

    rule: str
    steps: int
    total_ns: int
    share: float  # of the whole run's step time
    listed: list[FlaggedStep]  # the longest first, at most a few


class Execution(msgspec.Struct, frozen=True, kw_only=True):
    """How the engine executed, read from the run (manifest compilation record or argv)."""

    device: Literal["gpu", "cpu"]
    mode: Literal["eager", "compiled", "unknown"]
    graphs: bool | None  # CUDA graphs on (GPU runs); None: not known or not a GPU run
    source: str


class RunContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the figures cover: the profiled window (trace) against the whole run
    (``steps/``), the profiler's own cost, the steps left out of means, and how the engine
    executed."""

    window_steps: int  # engine steps annotated in the profiled window (one rank per replica)
    window_ns: int  # the analysed window (longest rank)
    run_steps: int | None  # engine steps over the whole run (steps/); None without steps/
    run_ns: int | None  # the whole run's step span (steps/)
    overhead: ProfilerOverhead
    excluded: StepExclusions | None  # None without per-step records
    execution: Execution
