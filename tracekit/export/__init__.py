"""Timeline export: a run as a native Perfetto trace (``.pftrace``) or Chrome JSON.

::

    from tracekit.export import export
    summary = export("run/", "run.pftrace")            # or fmt="json"

The timeline (tracks, slices, counters, flows) is described in ``tracekit.export.build`` and
``tracekit.export.flows``; the two file formats are sinks in ``perfetto`` and ``chrome``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Literal

from tracekit.core.errors import TracekitError
from tracekit.core.trace_model import Trace
from tracekit.export.timeline import ExportSummary, Sink

Format = Literal["perfetto", "json"]
FORMATS: tuple[Format, ...] = ("perfetto", "json")
SUFFIX: dict[Format, str] = {"perfetto": ".pftrace", "json": ".json"}


def format_for(path: Path) -> Format:
    """The format an output name asks for: ``.json`` is Chrome JSON, anything else Perfetto."""
    return "json" if path.name.endswith(".json") else "perfetto"


def export(source: str | Path | Trace, out: str | Path, fmt: Format = "perfetto") -> ExportSummary:
    """Load ``source`` (unless it is a Trace already), analyse it keeping each rank's
    partition, and write its timeline to ``out``.

    The file is written under a temporary name and renamed when complete, so a failed export
    never leaves a truncated trace behind.
    """
    from analyzers.engine.driver import analyze_loaded
    from analyzers.read.loader import load
    from tracekit.export.build import emit_trace

    began = time.perf_counter()
    trace = source if isinstance(source, Trace) else load(source)
    analysis, partitions = analyze_loaded(trace, keep_partitions=True)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    sink: Sink
    try:
        with tmp.open("wb") as handle:
            sink = _sink(fmt, handle)
            flows = emit_trace(trace, analysis, partitions, sink)
            sink.close()
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TracekitError(out, f"cannot write: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ExportSummary(
        path=str(out),
        format=fmt,
        bytes=os.path.getsize(out),
        ranks=len(trace.ranks),
        tracks=sink.tracks,
        slices=sink.slice_count,
        counter_values=sink.counter_values,
        flows=flows,
        seconds=time.perf_counter() - began,
    )


def _sink(fmt: Format, out: IO[bytes]) -> Sink:
    if fmt == "perfetto":
        from tracekit.export.perfetto import PerfettoSink

        return PerfettoSink(out)
    if fmt == "json":
        from tracekit.export.chrome import ChromeJsonSink

        return ChromeJsonSink(out)
    raise ValueError(f"unknown export format {fmt!r} (expected one of {FORMATS})")


__all__ = ["FORMATS", "ExportSummary", "Format", "export", "format_for"]
