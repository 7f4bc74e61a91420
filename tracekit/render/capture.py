"""What ``tracekit capture`` says: one line as it starts, a summary of the run directory at the
end, and how the command ended. The summary's figures (``summarize``) are a pure function of
the run directory; ``render`` only lays them out (80 columns)."""

from __future__ import annotations

import gzip
import json
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from analyzers.rank.step_annotations import is_step_name
from collectors.live_status import live_figures, status_line
from tracekit.core import rundir
from tracekit.render import text_console

WIDTH = 80
#: traces larger than this are not parsed for the window: the manifest's window is shown
WINDOW_PARSE_LIMIT = 32 * 1024 * 1024
_RECORDING = {
    "full": "torch profiler traces + step stats",
    "nvtx": "NVTX ranges only + step stats",
    "nsys": "nsys report + step stats",
}


def start_line(run: Path, argv: list[str], mode: str, warmup_steps: int, steps: int) -> str:
    command = shlex.join(argv)
    if len(command) > 60:
        command = command[:57] + "..."
    return (
        f"tracekit: capturing `{command}` into {run}/ ({warmup_steps} warm-up steps, then "
        f"{steps} profiled; {_RECORDING.get(mode, mode)})"
    )


def exit_line(status: int, signal_name: str | None) -> str | None:
    """One line naming how a command that failed ended; None when it exited 0."""
    if signal_name is not None:
        return f"tracekit: command killed by {signal_name} (exit status {status})"
    return f"tracekit: command exited with status {status}" if status else None


@dataclass(frozen=True)
class CaptureSummary:
    run: Path
    status: str
    exit_code: int | None
    mode: str
    ranks: int
    trace_bytes: tuple[int, ...]  # one per trace file in traces/
    engines: int  # engines whose facts the plugin wrote (meta/engine-*.json)
    step_records: int  # StepRecords under steps/
    warmup_steps: int | None  # the window asked for (manifest)
    window_steps: int | None  # as asked for (manifest), or as profiled (step annotations)
    window_ns: int | None  # the profiled window's length, from the step annotations
    window_source: str  # "traces" or "manifest"
    notes: tuple[str, ...]

    @property
    def recorded(self) -> bool:
        return bool(self.engines or self.step_records or self.trace_bytes)


def summarize(run: Path) -> CaptureSummary:
    """The summary's figures, read from the run directory."""
    manifest = rundir.read_manifest(run)
    traces = sorted(p for p in (run / rundir.TRACES).glob("*") if p.is_file())
    window = _window(run / rundir.TRACES / manifest.ranks[0].file) if manifest.ranks else None
    return CaptureSummary(
        run=run,
        status=manifest.status,
        exit_code=manifest.exit_code,
        mode=str(manifest.capture.get("mode", "full")),
        ranks=len(manifest.ranks),
        trace_bytes=tuple(p.stat().st_size for p in traces),
        engines=len(list((run / "meta").glob("engine-*.json"))),
        step_records=len(rundir.read_steps(run)) if (run / rundir.STEPS).is_dir() else 0,
        warmup_steps=manifest.capture.get("warmup_steps"),
        window_steps=window[0] if window else manifest.capture.get("steps"),
        window_ns=window[1] if window else None,
        window_source="traces" if window else "manifest",
        notes=tuple(manifest.notes),
    )


def _window(trace: Path) -> tuple[int, int] | None:
    """Step annotations in one rank's trace: (steps, ns from the first start to the last end)."""
    try:
        if trace.stat().st_size > WINDOW_PARSE_LIMIT:
            return None
        opener: Any = gzip.open if trace.name.endswith(".gz") else open
        with opener(trace, "rt") as handle:
            events = json.load(handle).get("traceEvents", [])
    except (OSError, ValueError, AttributeError):
        return None
    spans = {
        float(e["ts"]): float(e.get("dur", 0))
        for e in events
        if isinstance(e, dict)
        and e.get("cat") == "user_annotation"
        and is_step_name(str(e.get("name", "")))
        and "ts" in e
    }
    if not spans:
        return None
    end = max(ts + dur for ts, dur in spans.items())
    return len(spans), round((end - min(spans)) * 1000)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def rows(summary: CaptureSummary) -> list[tuple[str, str]]:
    s = summary
    status = s.status if s.exit_code is None else f"{s.status} (exit {s.exit_code})"
    out = [("run", f"{s.run}/"), ("status", status)]
    if not s.recorded:
        out.append(("recorded", "nothing"))
    else:
        out.append(("ranks", f"{s.ranks} captured"))
        sizes = s.trace_bytes
        if len(sizes) == 1:
            out.append(("traces", f"1 file, {_size(sizes[0])}"))
        elif sizes:
            each = f"{_size(min(sizes))}-{_size(max(sizes))} each"
            out.append(("traces", f"{len(sizes)} files, {_size(sum(sizes))} ({each})"))
        else:
            out.append(("traces", "none"))
        engines = f"{s.engines} engine" + ("s" if s.engines != 1 else "")
        out.append(("steps", f"{s.step_records} step records from {engines}"))
        if s.window_ns is not None:
            window = f"{s.window_steps} steps, {s.window_ns / 1e6:,.1f} ms (step annotations)"
        else:
            window = f"{s.window_steps} steps asked for (no step annotations read)"
        if s.warmup_steps is not None:
            window += f", after {s.warmup_steps} warm-up"
        out.append(("window", window))
    return out + [("note", note) for note in s.notes]


def next_commands(summary: CaptureSummary) -> list[str]:
    """What to run next; none when nothing was recorded (there is nothing to analyse)."""
    if not summary.recorded:
        return []
    return [f"tracekit analyze {summary.run}", f"tracekit open {summary.run}"]


def render(summary: CaptureSummary, colour: bool = False) -> str:
    table = Table(
        title=f"tracekit capture: {summary.status}",
        box=box.SIMPLE,
        show_header=False,
        title_justify="left",
    )
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows(summary):
        table.add_row(key, value)
    console, buffer = text_console(WIDTH, colour)
    console.print(table)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    nexts = next_commands(summary)  # never wrapped: they are copied and pasted
    lines += [f"  next: {cmd}" if i == 0 else f"        {cmd}" for i, cmd in enumerate(nexts)]
    return "".join(line + "\n" for line in lines)


@contextmanager
def live_status(run: Path, warmup_steps: int, steps: int, enabled: bool) -> Iterator[None]:
    """While the block runs, one status line on stderr, refreshed twice a second (``--quiet``
    on a terminal); nothing when disabled. The line goes away when the block ends."""
    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.live import Live
    from rich.spinner import Spinner

    started = time.monotonic()
    spinner = Spinner("dots", style="cyan")

    def line() -> Spinner:
        figures = live_figures(run, warmup_steps, steps)
        text = status_line(figures, time.monotonic() - started)
        spinner.update(text=f"{text} · output in logs/")
        return spinner

    live = Live(
        get_renderable=line,
        console=Console(stderr=True),
        refresh_per_second=2,
        transient=True,
        redirect_stdout=False,
    )
    with live:
        yield
