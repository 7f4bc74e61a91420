"""Capture merge: each graph-replayed kernel gets the op call that launched it at capture.

A replay's kernels share its graph launch's correlation id (``cudaGraphLaunch`` /
``hipGraphLaunch``). In start order they are the captured graph's kernels in launch order, so
a replay is matched to the captured graph (``analyzers.read.graph_capture``) whose kernel
names are the same sequence, and its k-th kernel belongs to the op call that launched the
graph's k-th kernel. Each (replay, call) pair becomes one call of the per-op roofline, with
the call's cost from its capture shapes. A decode attention call's cost needs the step's
context (keys read, query-key pairs): from the detailed step annotation around the replay's
launch; without one, its kernels stay uncosted and the notes say so.

Replays matched to no graph (another batch size not captured, kernels on several streams
reordered, a capture from another build) keep their kernels uncosted; the notes count them.
Graphs with the same kernel sequence but different costs are ambiguous and not used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from analyzers.rank.step_annotations import StepRow
from analyzers.read.graph_capture import CapturedGraph, captures_beside
from tracekit.core.trace_model import Events, Kind, NameTable

GRAPH_LAUNCH = re.compile(r"GraphLaunch", re.IGNORECASE)


class GraphCalls(NamedTuple):
    """Replayed kernels costed by capture shapes: ``rows`` (device rows), ``owner`` (per row,
    its call), and per call its FLOPs, bytes and kind (index into OP_KINDS)."""

    rows: npt.NDArray[np.intp]
    owner: npt.NDArray[np.intp]
    flops: npt.NDArray[np.float64]
    bytes: npt.NDArray[np.float64]
    kind: npt.NDArray[np.int8]
    notes: list[str]
    layer: npt.NDArray[np.intp] | None = None  # per call: its decoder layer, -1 unknown


def graph_launches(events: Events, names: NameTable) -> npt.NDArray[np.intp]:
    """The runtime rows that launch a graph."""
    runtime = np.flatnonzero((events.kind == Kind.RUNTIME) & (events.correlation >= 0))
    ids, inverse = np.unique(events.name_id[runtime], return_inverse=True)
    is_launch = np.array([bool(GRAPH_LAUNCH.search(names[int(i)])) for i in ids], dtype=bool)
    return runtime[is_launch[inverse]] if len(ids) else runtime


class _Graph(NamedTuple):
    """A captured graph as arrays: per kernel its call (-1: none); per call its cost parts."""

    call_of: npt.NDArray[np.intp]
    flops: npt.NDArray[np.float64]
    bytes: npt.NDArray[np.float64]
    per_pair: npt.NDArray[np.float64]
    per_key: npt.NDArray[np.float64]
    kind: npt.NDArray[np.int8]
    layer: npt.NDArray[np.intp]

    @classmethod
    def of(cls, g: CapturedGraph) -> _Graph:
        calls = g.calls
        return cls(
            np.array(g.call_of, dtype=np.intp),
            np.array([c.flops for c in calls], dtype=np.float64),
            np.array([c.bytes for c in calls], dtype=np.float64),
            np.array([c.per_pair for c in calls], dtype=np.float64),
            np.array([c.per_key for c in calls], dtype=np.float64),
            np.array([c.kind for c in calls], dtype=np.int8),
            np.array(g.layer_of or [-1] * len(calls), dtype=np.intp),
        )


def merge_captures(
    events: Events, names: NameTable, trace_path: str, steps: Sequence[StepRow]
) -> GraphCalls | None:
    """The replayed kernels costed from the capture traces beside ``trace_path`` (read only
    where a graph was replayed); None where none was."""
    launches = graph_launches(events, names)
    kernels = np.flatnonzero((events.kind == Kind.KERNEL) & (events.correlation >= 0))
    replayed = kernels[np.isin(events.correlation[kernels], events.correlation[launches])]
    if not len(replayed):
        return None
    captures = captures_beside(trace_path)
    if captures is None:
        return _empty(
            [
                f"capture merge: {len(replayed)} graph-replayed kernels carry no op and no "
                "capture trace is beside the trace (capture_traces/): they are costed by "
                "name rules"
            ]
        )
    graphs, ambiguous = _index(captures.graphs, names)
    order = np.lexsort((events.start_ns[replayed], events.correlation[replayed]))
    replayed = replayed[order]
    cuts = np.flatnonzero(np.diff(events.correlation[replayed])) + 1
    step_starts = np.array([s.start_ns for s in steps], dtype=np.int64)
    launch_of = dict(zip(events.correlation[launches].tolist(), launches.tolist(), strict=False))
    rows, owners, flops, size, kind, layer = [], [], [], [], [], []
    matched = unmatched = no_context = total = 0
    for group in np.split(replayed, cuts):
        graph = graphs.get(tuple(events.name_id[group].tolist()))
        if graph is None:
            unmatched += 1
            continue
        matched += 1
        launch = launch_of[int(events.correlation[group[0]])]
        step = _step_at(steps, step_starts, int(events.start_ns[launch]))
        pairs, keys = (step.pairs, step.keys) if step is not None else (None, None)
        context = (graph.per_pair > 0) | (graph.per_key > 0)
        usable = ~context if pairs is None or keys is None else np.ones(len(context), bool)
        no_context += int((~usable).sum())
        index = np.where(usable, np.cumsum(usable) - 1 + total, -1)
        owner = np.full(len(graph.call_of), -1, dtype=np.intp)
        if len(index):  # a graph none of whose ops is costable has no calls
            owner = np.where(graph.call_of >= 0, index[np.clip(graph.call_of, 0, None)], -1)
        rows.append(group[owner >= 0])
        owners.append(owner[owner >= 0])
        flops.append(graph.flops[usable] + graph.per_pair[usable] * (pairs or 0))
        size.append(graph.bytes[usable] + graph.per_key[usable] * (keys or 0))
        kind.append(graph.kind[usable])
        layer.append(graph.layer[usable])
        total += int(usable.sum())
    notes = [
        f"capture merge: {matched} of {matched + unmatched} graph replays matched to the "
        f"{len(captures.graphs)} graph(s) captured in {captures.folder} by their kernel "
        "sequence; their kernels costed by the capture's op shapes",
        *captures.notes,
    ]
    if unmatched:
        notes.append(
            f"capture merge: {unmatched} replays match no captured graph (another batch size, "
            "or kernels reordered across streams): costed by name rules"
        )
    if ambiguous:
        notes.append(
            f"capture merge: {ambiguous} captured graphs share a kernel sequence with "
            "different shapes: not used"
        )
    if no_context:
        notes.append(
            f"capture merge: {no_context} attention calls left uncosted: the replay's step "
            "has no detailed annotation (keys read), so their context is unknown"
        )
    return GraphCalls(
        _joined(rows, np.intp),
        _joined(owners, np.intp),
        _joined(flops, np.float64),
        _joined(size, np.float64),
        _joined(kind, np.int8),
        notes,
        _joined(layer, np.intp),
    )


def _joined(parts: list[Any], dtype: type) -> Any:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def _index(
    graphs: Sequence[CapturedGraph], names: NameTable
) -> tuple[dict[tuple[int, ...], _Graph], int]:
    """Graphs by kernel sequence (as this run's name ids; a kernel name the run never saw
    matches nothing); a sequence captured with different costs is dropped."""
    first: dict[tuple[str, ...], CapturedGraph] = {}
    dropped: set[tuple[str, ...]] = set()
    for g in graphs:
        seen = first.setdefault(g.kernels, g)
        if (seen.call_of, seen.calls) != (g.call_of, g.calls):
            dropped.add(g.kernels)
    out = {}
    for kernels, g in first.items():
        ids = [names.index.get(k) for k in kernels]
        if kernels not in dropped and None not in ids:
            out[tuple(i for i in ids if i is not None)] = _Graph.of(g)
    return out, sum(1 for g in graphs if g.kernels in dropped)


def _step_at(steps: Sequence[StepRow], starts: npt.NDArray[np.int64], t: int) -> StepRow | None:
    at = int(np.searchsorted(starts, t, side="right")) - 1
    if at < 0 or t >= steps[at].start_ns + steps[at].dur_ns:
        return None
    return steps[at]


def _empty(notes: list[str]) -> GraphCalls:
    none = np.zeros(0, dtype=np.intp)
    return GraphCalls(none, none, np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int8), notes)
