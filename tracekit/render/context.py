"""The report's "Analysed window vs whole run" lines, from ``Analysis.context``."""

from __future__ import annotations

from tracekit.core.analysis import Analysis
from tracekit.core.run_context import RunContext
from tracekit.render import ms

TITLE = "Analysed window vs whole run"


def context_lines(analysis: Analysis) -> list[str]:
    """What the figures cover, the profiler's own cost, the steps left out of means, and how
    the engine executed; empty without a context."""
    c = analysis.context
    if c is None:
        return []
    return [_coverage(c), _overhead(c), *_excluded(c), _execution(c)]


def _coverage(c: RunContext) -> str:
    window = (
        f"analysed window: {c.window_steps} engine step(s), {ms(c.window_ns)} ms "
        "(trace: buckets, top ops, engine-step table)"
    )
    if c.run_steps is None or c.run_ns is None:
        return window + "; whole run: not known (no steps/ records)"
    return (
        f"{window}; whole run: {c.run_steps} engine step(s), {ms(c.run_ns)} ms "
        "(steps/: scheduler, KV cache, tokens, preemptions)"
    )


def _overhead(c: RunContext) -> str:
    o = c.overhead
    if o.ratio.value is None:
        return f"profiler overhead: {o.ratio.note}"
    added = o.added_share.value or 0.0
    cost = (
        f"≈{added:.0%} of the window's step time is the profiler's own cost, counted as host"
        if added > 0
        else "no overhead measured (profiled steps were not slower)"
    )
    return (
        f"profiler overhead: profiled steps took {o.ratio.value:.2f}× as long as unprofiled "
        f"steps of the same shape (median of {o.pairs} pair(s), {o.shapes} shape(s); "
        f"{o.profiled_steps} profiled, {o.unprofiled_steps} unprofiled steps; steps/): {cost}"
    )


def _excluded(c: RunContext) -> list[str]:
    e = c.excluded
    if e is None:
        return []
    if not e.steps:
        return [f"left out of means: none ({e.rule})"]
    shown = "; ".join(f"{s.reason} {ms(s.dur_ns)} ms" for s in e.listed)
    more = f"; +{e.steps - len(e.listed)} more" if e.steps > len(e.listed) else ""
    return [
        f"left out of means and time-weighted figures: {e.steps} step(s), {ms(e.total_ns)} ms "
        f"({e.share:.0%} of the whole run's step time): {shown}{more}",
        f"rule: {e.rule}",
    ]


def _execution(c: RunContext) -> str:
    x = c.execution
    graphs = "" if x.graphs is None else f", CUDA graphs {'on' if x.graphs else 'off'}"
    return f"execution: {x.mode}{graphs} on {x.device.upper()} ({x.source})"
