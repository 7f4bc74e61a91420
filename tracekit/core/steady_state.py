"""The steady window's record in the Analysis: which engine steps were analysed, and why.

``analyzers/run/steady_state.py`` chooses it from the step composition (batch, prefill /
decode mix, step time) by the thresholds of ``regime_table`` (``STEADY_*``); the driver
analyses every rank over it unless asked for the whole window (``--whole-window``).
"""

from __future__ import annotations

from typing import Literal

import msgspec


class EngineSteady(msgspec.Struct, frozen=True, kw_only=True):
    """One engine's (DP replica's) steps in the whole window, and those chosen as steady.

    Step indices count this engine's steps in the whole window from 0, in time order."""

    engine: int  # data-parallel replica
    source: str  # whose steps: "rank 0 (dp0 pp0 tp0) step annotations" or "steps/ records"
    steps: int  # steps in the whole window
    first: int | None  # the first and last steady step (None: no steady run of steps)
    last: int | None
    warmup: int  # leading steps left out as warm-up (slow or prefill-heavy)
    ramp: int  # leading steps left out with the batch still below the plateau
    drain: int  # trailing steps left out with the batch fallen below the plateau
    plateau_batch: int  # requests per step on the plateau
    median_step_ns: int  # the chosen steps' median duration
    reason: str  # in words, with the numbers


class SteadyState(msgspec.Struct, frozen=True, kw_only=True):
    """The analysed window against the whole one: every rank's figures cover ``start_ns`` ..
    ``start_ns + ns``; the whole window (``whole_start_ns``, ``whole_ns``) is what
    ``--whole-window`` analyses."""

    # "steady": the steady window is analysed; "whole": the whole window is, because no
    # steady window was found (``reason``) or because it was asked for (``--whole-window``)
    analysed: Literal["steady", "whole"]
    asked: Literal["steady", "whole"]  # what the caller asked for
    start_ns: int  # the analysed window
    ns: int
    whole_start_ns: int  # the whole (common) window
    whole_ns: int
    steps: int  # engine steps in the analysed window (over all engines)
    whole_steps: int  # engine steps in the whole window
    reason: str  # why this window, in words with the numbers
    engines: list[EngineSteady] = msgspec.field(default_factory=list)
    # the steady window found, where the whole window was analysed anyway (``--whole-window``)
    steady_start_ns: int | None = None
    steady_ns: int | None = None
