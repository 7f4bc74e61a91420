"""The report's "Analysed window" lines (``Analysis.steady``): the steady window or the whole
one, which engine steps it holds, and why."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text

from tracekit.core.analysis import Analysis
from tracekit.core.steady_state import SteadyState
from tracekit.render import bullets, ms

WHOLE_HINT = "`tracekit analyze --whole-window` analyses the whole window"


def steady_parts(analysis: Analysis) -> list[RenderableType]:
    """The title and the lines; nothing for an Analysis without a window record."""
    s = analysis.steady
    if s is None:
        return []
    title = "steady state" if s.analysed == "steady" else "the whole profiled window"
    return [Text(f"Analysed window: {title}", style="bold"), bullets(steady_lines(s))]


def steady_lines(s: SteadyState) -> list[str]:
    if s.analysed == "whole":
        return [_cap(s.reason)]
    lead = s.start_ns - s.whole_start_ns
    tail = s.whole_start_ns + s.whole_ns - (s.start_ns + s.ns)
    lines = [
        f"{ms(s.ns)} ms of the whole window's {ms(s.whole_ns)} ms ({s.steps} of "
        f"{s.whole_steps} engine steps; {ms(lead)} ms left out before it, {ms(tail)} ms "
        "after): every rank's figures cover it"
    ]
    many = len(s.engines) > 1
    lines += [
        (f"dp{c.engine}: " if many else "") + f"{_cap(c.reason)} ({c.source})" for c in s.engines
    ]
    return [*lines, WHOLE_HINT + f" ({s.whole_steps} steps)"]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
