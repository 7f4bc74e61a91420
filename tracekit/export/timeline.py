"""The exported timeline, independent of the file format: tracks, slices, counters, flows.

The builder (``tracekit.export.build``) walks a run and hands these records to a ``Sink``
one track at a time; each sink (Perfetto protobuf, Chrome JSON) writes them out as they come,
so no sink ever holds the whole trace. Times are absolute int64 nanoseconds; a sink may shift
them (``Sink.begin`` gets the earliest timestamp of the run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Arg = int | float | str
TrackKind = Literal["process", "thread", "track", "counter"]


@dataclass(frozen=True)
class Track:
    """A process (one per rank), a thread, a named lane (stream, tracekit lanes) or a counter.

    ``pid`` is the process's id in the export; ``tid`` is the OS thread id for threads and a
    synthetic lane id (unique within the process) for the other tracks, which the Chrome JSON
    sink needs; ``order`` sorts siblings under their process.
    """

    uuid: int
    name: str
    kind: TrackKind
    pid: int
    tid: int = 0
    parent: int | None = None
    order: int = 0
    unit: str = ""  # counters only


@dataclass(frozen=True)
class Slices:
    """Properly nested slices of one track, in emission order (start ascending, outer first).

    ``end`` is already clamped so that a child never outlives its parent. ``flows_out`` and
    ``flows_in`` map a slice's position to the flow ids that leave / arrive at its beginning;
    ``flows_in_end`` those arriving at its end (a target that began before its source).
    """

    track: Track
    start: I64
    end: I64
    names: Sequence[str]
    categories: Sequence[str] | str
    args: Sequence[Mapping[str, Arg] | None] | None = None
    flows_out: Mapping[int, Sequence[int]] = field(default_factory=dict)
    flows_in: Mapping[int, Sequence[int]] = field(default_factory=dict)
    flows_in_end: Mapping[int, Sequence[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def category(self, i: int) -> str:
        return self.categories if isinstance(self.categories, str) else self.categories[i]


@dataclass(frozen=True)
class Counter:
    track: Track
    ts: I64
    values: F64


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: the figures the CLI prints and the tests check."""

    path: str
    format: str
    bytes: int
    ranks: int
    tracks: int
    slices: int
    counter_values: int
    flows: dict[str, int]
    seconds: float


class Sink(Protocol):
    """Receives a timeline in order: ``begin``, then tracks (each before its contents), ``close``.

    A sink counts what it wrote: ``tracks``, ``slice_count`` and ``counter_values``.
    """

    tracks: int
    slice_count: int
    counter_values: int

    def begin(self, origin_ns: int) -> None: ...
    def track(self, track: Track) -> None: ...
    def slices(self, batch: Slices) -> None: ...
    def counter(self, series: Counter) -> None: ...
    def close(self) -> None: ...


def nest(start: I64, end: I64) -> tuple[npt.NDArray[np.intp], I64]:
    """Order intervals for a slice track and clamp children to their parents.

    Returns the emission order (start ascending, longer first on ties) and the ends in that
    order, each clamped to the end of the innermost interval open around it: profilers round
    timestamps, so a child can overrun its parent by a few ns and overlapping events on one
    thread or stream must still nest. Starts are never moved.
    """
    order = np.lexsort((start - end, start))
    starts = start[order].tolist()
    ends = end[order].tolist()
    stack: list[int] = []
    for i, s in enumerate(starts):
        while stack and stack[-1] <= s:
            stack.pop()
        if stack and ends[i] > stack[-1]:
            ends[i] = stack[-1]
        stack.append(ends[i])
    return order, np.array(ends, dtype=np.int64)


def begin_end(starts: list[int], ends: list[int]) -> list[tuple[int, int]]:
    """(timestamp, event) for nested slices in emission order: ``i`` begins slice ``i``,
    ``~i`` (negative) ends it."""
    out: list[tuple[int, int]] = []
    stack: list[int] = []
    for i, s in enumerate(starts):
        while stack and ends[stack[-1]] <= s:
            j = stack.pop()
            out.append((ends[j], ~j))
        out.append((s, i))
        stack.append(i)
    while stack:
        j = stack.pop()
        out.append((ends[j], ~j))
    return out
