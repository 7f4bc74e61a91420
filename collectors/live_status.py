"""What a quiet capture shows while the command runs: figures read from the growing run directory.

A pure function of the run directory (and the window asked for), polled about twice a second by
``tracekit capture --quiet``; cheap enough for that: it counts lines in ``steps/*.jsonl`` and
lists ``traces/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from collectors.settings import RAW_TRACES
from tracekit.core import rundir

_TRACE_PATTERNS = ("*.pt.trace.json*", "*.nsys-rep")


@dataclass(frozen=True)
class LiveFigures:
    steps: int  # engine steps seen: the most any engine has recorded
    engines: int  # engines writing step records (steps/*.jsonl)
    trace_files: int  # per-rank traces written so far (traces/, its raw folder, nsys reports)
    warmup_steps: int
    window_steps: int

    @property
    def window(self) -> str:
        """``warm-up 3/5``, ``window open 4/12``, or ``window closed``."""
        if self.steps < self.warmup_steps:
            return f"warm-up {self.steps}/{self.warmup_steps}"
        profiled = self.steps - self.warmup_steps
        if profiled < self.window_steps and not self.trace_files:
            return f"window open {profiled}/{self.window_steps}"
        return "window closed"


def live_figures(run: Path, warmup_steps: int, window_steps: int) -> LiveFigures:
    """Read the figures from a run directory that a capture is writing."""
    counts = []
    for path in sorted((run / rundir.STEPS).glob("*.jsonl")):
        try:
            counts.append(path.read_bytes().count(b"\n"))
        except OSError:
            continue
    traces = run / rundir.TRACES
    files = {
        path.name
        for folder in (traces, traces / RAW_TRACES)
        for pattern in _TRACE_PATTERNS
        for path in folder.glob(pattern)
        if "async_llm" not in path.name  # the front end's almost empty trace: not a rank
    }
    return LiveFigures(
        steps=max(counts, default=0),
        engines=len(counts),
        trace_files=len(files),
        warmup_steps=warmup_steps,
        window_steps=window_steps,
    )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return (
        f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
        if minutes >= 60
        else f"{minutes}:{secs:02d}"
    )


def status_line(figures: LiveFigures, elapsed_s: float) -> str:
    """One line: elapsed time, engine steps, the window, ranks that wrote traces."""
    f = figures
    steps = f"{f.steps} engine steps" if f.steps != 1 else "1 engine step"
    if f.engines > 1:
        steps += f" ({f.engines} engines)"
    ranks = f"traces from {f.trace_files} rank" + ("s" if f.trace_files != 1 else "")
    return f"{_clock(elapsed_s)}  {steps} · {f.window} · {ranks}"
