"""A rank's compact result: what the run-level reports need once its events are gone.

The per-rank stages need a rank's whole event table; the run-level reports (collectives
matched across ranks, pipeline drain between steps) need only a little of it: per collective
kind, when each call started and how long it ran, the modelled message sizes, the time each
kind was exposed or hidden, and the step windows. ``digest`` keeps exactly that next to the
``RankResult``, so a rank can be analysed in another process or on another node and sent back
in a few kilobytes; the sequential path goes through the same digests, so every engine gives
the same Analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import numpy.typing as npt

from analyzers.rank.classify import FAMILY_INDEX, LEVELS
from analyzers.rank.message_size import SIZE_SOURCE, collective_bytes, collective_groups
from analyzers.rank.op_table import OpTable
from analyzers.rank.roofline_stage import step_windows
from analyzers.read.run_facts import RunFacts
from tracekit.core.analysis import CollectiveName, RankResult
from tracekit.core.partition import RankPartition
from tracekit.core.trace_model import DEVICE_KINDS, Events, Kind, RankId, Trace

if TYPE_CHECKING:
    from analyzers.rank.rank_stages import RankState

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

MODEL_SIZE_SOURCE = "model config + step tokens"
#: the collective families, in report order
KINDS: tuple[CollectiveName, ...] = get_args(CollectiveName)


@dataclass(frozen=True)
class RunInfo:
    """What the Analysis says about the run as a whole, besides its ranks."""

    source: str
    run_dir: str | None = None
    manifest: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, trace: Trace) -> RunInfo:
        return cls(trace.source, trace.run_dir, trace.manifest, trace.warnings)


@dataclass(frozen=True)
class KindCalls:
    """One rank's calls of one collective kind, in time order (nested calls count once)."""

    start_ns: I64
    dur_ns: I64
    size_bytes: F64 | None = None  # message bytes per call; 0 = unknown
    size_source: str | None = None  # the trace's args or shapes, else the model config
    group_size: I64 | None = None  # per call, the communicator's size (trace); -1 unknown


@dataclass(frozen=True)
class RankDigest:
    result: RankResult
    calls: dict[str, KindCalls]
    #: per collective kind: its exclusive (exposed) and hidden (overlapped) time on this rank
    exposure: dict[str, tuple[int, int]]
    step_start_ns: I64 | None = None  # the rank's step windows (None without steps)
    step_end_ns: I64 | None = None
    #: the rank's segments, kept where the caller asked (a timeline); None otherwise
    partition: RankPartition | None = None
    #: every op's time by name and shape, kept where the caller asked (a diff); None otherwise
    ops: OpTable | None = None

    @property
    def identity(self) -> RankId:
        return self.result.identity


def digest(state: RankState, result: RankResult, facts: RunFacts | None) -> RankDigest:
    """The compact form of a rank whose stages have run."""
    att = state.attribution
    ev = state.trace.events
    calls: dict[str, KindCalls] = {}
    exposure: dict[str, tuple[int, int]] = {}
    for kind in KINDS:
        if att is not None:
            level = LEVELS.index(kind)
            exclusive = int(att.partition.exclusive_ns[level])
            exposure[kind] = (exclusive, int(att.partition.active_ns[level]) - exclusive)
        rows = call_rows(state, kind)
        if not len(rows):
            continue
        traced = collective_bytes(ev, rows)
        size, source = None, None
        if (traced > 0).any():
            size, source = np.clip(traced, 0, None).astype(np.float64), SIZE_SOURCE
        elif kind == "all_reduce" and facts is not None:
            size = _allreduce_bytes(state, rows, facts)
            source = MODEL_SIZE_SOURCE if size is not None else None
        groups = collective_groups(ev, rows)
        calls[kind] = KindCalls(
            ev.start_ns[rows].copy(),
            ev.dur_ns[rows].copy(),
            size,
            source,
            groups if (groups > 0).any() else None,
        )
    start = end = None
    if state.steps and att is not None:
        start, end = step_windows(ev, state.steps, att.device)
    return RankDigest(result, calls, exposure, start, end)


def call_rows(state: RankState, kind: str) -> npt.NDArray[np.intp]:
    """Rows of this rank's calls of ``kind`` inside its analysed window, in time order;
    nested calls count once. On a CPU rank whose backend records its own spans of ``kind``
    (gloo's ``gloo:*`` annotations: the transfer itself, while the ``c10d::`` op only
    enqueues it), those are the calls."""
    ev, att = state.trace.events, state.attribution
    if att is None:
        return np.zeros(0, dtype=np.intp)
    mine = att.op_family == FAMILY_INDEX[kind]
    lo, hi = att.window_start_ns, att.window_start_ns + att.window_ns
    mine &= (ev.start_ns <= hi) & (ev.end_ns >= lo)
    kinds = DEVICE_KINDS if att.device == "gpu" else (Kind.CPU_OP,)
    rows = np.flatnonzero(np.isin(ev.kind, kinds) & mine)
    spans = np.flatnonzero((ev.kind == Kind.ANNOTATION) & mine)
    if att.device == "cpu" and len(spans):
        rows = spans
    if not len(rows):
        return rows
    order = np.lexsort((-ev.dur_ns[rows], ev.start_ns[rows]))
    rows = rows[order]
    keep = np.ones(len(rows), dtype=bool)
    reach: dict[tuple[int, int], int] = {}
    for i, row in enumerate(rows.tolist()):
        thread = (int(ev.pid[row]), int(ev.tid[row]))
        if int(ev.start_ns[row]) < reach.get(thread, -1):
            keep[i] = False  # inside an outer call of the same kind
            continue
        reach[thread] = int(ev.start_ns[row]) + int(ev.dur_ns[row])
    return rows[keep]


def _allreduce_bytes(state: RankState, rows: npt.NDArray[np.intp], facts: RunFacts) -> F64 | None:
    """Per call: tokens · hidden · dtype bytes when its step holds the TP all-reduces, else 0."""
    m, steps = facts.model, state.steps
    if m is None or not steps or facts.layout.tp < 2:
        return None
    ev: Events = state.trace.events
    shard = facts.shard(state.trace.id)
    expected = 2 * shard.layers(m.layers) + (1 if shard.stage == 0 else 0)
    device = state.attribution.device if state.attribution is not None else "cpu"
    starts, ends = step_windows(ev, steps, device)
    at = np.searchsorted(starts, ev.start_ns[rows], side="right") - 1
    inside = (at >= 0) & (ev.start_ns[rows] < ends[np.clip(at, 0, None)])
    per_step = np.bincount(at[inside], minlength=len(steps))
    tokens = np.array([s.context_tokens + s.generation_tokens for s in steps], dtype=np.float64)
    size = np.zeros(len(rows), dtype=np.float64)
    good = inside & (per_step[np.clip(at, 0, None)] == expected)
    size[good] = tokens[at[good]] * m.hidden * m.dtype_bytes
    return size if good.any() else None
