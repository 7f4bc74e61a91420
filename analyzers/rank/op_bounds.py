"""Compute vs HBM per op call, from the shapes the trace recorded (``record_shapes=True``).

Each call tree's outermost op that ``analyzers.planning.op_cost`` can cost (GEMMs, attention,
elementwise) is set against the device's ridge point by its own FLOPs / bytes; its time — its
span on a CPU rank, the device work it launched on a GPU rank (by correlation id) — goes to
compute or hbm accordingly. Only named compute / hbm segments are relabelled, so the
partition stays exact. The roofline stage (``analyzers.rank.roofline_stage``) runs this after the
per-step model, and lets it take precedence where shapes exist.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from analyzers.planning.captured_cost import context_cost
from analyzers.planning.op_cost import (
    ATTENTION,
    HOST_KINDS,
    OP_KINDS,
    SHAPES_SOURCE,
    OpCosts,
    costs,
)
from analyzers.rank.attribute import BUCKET_INDEX, Attribution, relabel, split
from analyzers.rank.classify import FAMILY_LEVEL, UNCLASSIFIED_INDEX
from analyzers.rank.graph_merge import GraphCalls
from analyzers.rank.step_annotations import StepRow
from tracekit.core.analysis import OpKindRoofline
from tracekit.core.buckets import COMPUTE, HBM
from tracekit.core.hardware import DeviceSpec
from tracekit.core.trace_model import DEVICE_KINDS, NO_VALUE, Events, Kind

I64 = npt.NDArray[np.int64]
_C, _H = BUCKET_INDEX[COMPUTE], BUCKET_INDEX[HBM]
_MIN = np.iinfo(np.int64).min
CAPTURE_SOURCE: Final = "capture shapes"
_CONTEXT_HINT = (
    "; paged attention is costed over the step's whole context, and sliding-window layers "
    "read only their window of it"
)
SOURCES: Final = (SHAPES_SOURCE, CAPTURE_SOURCE)


def peak_errors(f_pct: float | None, b_pct: float | None) -> list[str]:
    """What a modelled figure above the device's peak is: a model error."""
    return [
        f"modelled {what} is {pct:.0f}% of the peak: a model error (the cost model or the "
        "peak is wrong), not a measurement"
        for what, pct in (("FLOP/s", f_pct), ("bandwidth", b_pct))
        if pct is not None and pct > 100
    ]


class OpResult(NamedTuple):
    kinds: list[OpKindRoofline]
    decided_ns: int
    notes: list[str]
    #: per source (SHAPES_SOURCE, CAPTURE_SOURCE): the intervals its costed calls' time covers
    spans: dict[str, tuple[I64, I64]]
    #: device time of capture-costed calls per decoder layer and op kind (where the capture
    #: recorded the layers)
    layers_ns: dict[int, dict[str, int]]


def op_roofline(
    att: Attribution,
    events: Events,
    spec: DeviceSpec,
    graph: GraphCalls | None = None,
    steps: Sequence[StepRow] = (),
) -> tuple[Attribution, OpResult | None]:
    """Each call tree's outermost shape-costed op (``analyzers.planning.op_cost``) decides its
    time by its own FLOP/byte against the ridge: on CPU ranks the op's span, on GPU ranks the device
    work it launched (by correlation id), and graph-replayed kernels by the op call that launched
    them at capture (``graph``: ``analyzers.rank.graph_merge``). Segments covered by a
    compute-bound call go to compute, the rest covered to hbm (the sweep's priority); only named
    compute / hbm time is relabelled, so the partition stays exact. Paged decode attention
    ops are costed at their step's keys read (vLLM's detailed annotation, ``steps``). None
    when no call is costed."""
    cost, unknown = _with_context(costs(events), events, steps)
    roots = _roots(events, np.flatnonzero((cost.kind >= 0) & (cost.bytes > 0)))
    extra = 0 if graph is None else len(graph.flops)
    if not len(roots) and not extra:
        return att, None
    none = np.zeros(0)
    flops = np.concatenate([cost.flops[roots], none if graph is None else graph.flops])
    size = np.concatenate([cost.bytes[roots], none if graph is None else graph.bytes])
    kind = np.concatenate([cost.kind[roots], none if graph is None else graph.kind])
    kind = kind.astype(np.int8)
    source = np.repeat(np.array([0, 1], dtype=np.int8), [len(roots), extra])
    bound = flops >= spec.ridge * size
    if att.device == "gpu":
        listed, owner = _launched(events, roots)
        if graph is not None:
            keep = ~np.isin(listed, graph.rows)
            listed = np.concatenate([listed[keep], graph.rows])
            owner = np.concatenate([owner[keep], graph.owner + len(roots)])
        lo, hi = events.start_ns[listed], events.end_ns[listed]
        timed = np.where(_inside(att, lo), events.dur_ns[listed], 0)
        time_ns = np.bincount(owner, weights=timed, minlength=len(flops))
        span = owner
    else:
        lo, hi = events.start_ns[roots], events.end_ns[roots]
        time_ns = np.where(_inside(att, lo), events.dur_ns[roots], 0)
        span = np.arange(len(roots))
        cpu = np.flatnonzero(events.kind == Kind.CPU_OP)
        at = _owner(events, roots, _thread(events, cpu), events.start_ns[cpu])
        listed, owner = cpu[at >= 0], at[at >= 0]
    att = split(att, np.concatenate([lo, hi]))
    on_c = cover(att, lo[bound[span]], hi[bound[span]]) > 0
    on_h = cover(att, lo[~bound[span]], hi[~bound[span]]) > 0
    named = att.partition.winner != FAMILY_LEVEL[UNCLASSIFIED_INDEX]
    eligible = (on_c | on_h) & np.isin(att.segment_bucket, (_C, _H)) & named
    labels = att.segment_bucket.copy()
    labels[eligible] = np.where(on_c[eligible], _C, _H)
    op_bucket = att.op_bucket.copy()
    ok = np.isin(op_bucket[listed], (_C, _H)) & (att.op_family[listed] != UNCLASSIFIED_INDEX)
    op_bucket[listed[ok]] = np.where(bound[owner[ok]], _C, _H)
    decided = int(np.diff(att.partition.bounds)[eligible].sum())
    time_ns = np.asarray(time_ns, dtype=np.int64)
    kinds, notes = [], []
    for code, name in enumerate(SOURCES):
        mine = source == code
        k, n = _op_kinds(spec, flops[mine], size[mine], kind[mine], time_ns[mine], name)
        kinds += k
        notes += n
    if len(roots):
        notes.insert(
            0,
            f"ops: {len(roots)} calls costed from {SHAPES_SOURCE} (outermost costed op per call "
            f"tree), each call's time split by its FLOP/byte against the ridge {spec.ridge:.1f}",
        )
    if unknown:
        notes.append(
            f"{unknown} paged attention calls left uncosted: their step has no detailed "
            "annotation (keys read), so their context is unknown"
        )
    if graph is not None:
        notes += graph.notes
    spans = {
        name: (lo[source[span] == code], hi[source[span] == code])
        for code, name in enumerate(SOURCES)
    }
    layers: dict[int, dict[str, int]] = {}
    if graph is not None and graph.layer is not None:
        replayed = (graph.layer.tolist(), graph.kind.tolist(), time_ns[len(roots) :].tolist())
        for layer, k, ns in zip(*replayed, strict=True):
            if layer >= 0 and ns > 0:  # a call outside the analysed window has no time
                mine = layers.setdefault(layer, {})
                mine[OP_KINDS[k]] = mine.get(OP_KINDS[k], 0) + ns
    result = OpResult(kinds, decided, notes, spans, dict(sorted(layers.items())))
    return relabel(att, labels, op_bucket), result


def _inside(att: Attribution, starts: I64) -> npt.NDArray[np.bool_]:
    """Which starts lie in the analysed window: the op tables' calls and times cover it, as
    the buckets do (a call's FLOPs can't be split, so it counts where its work starts)."""
    return (starts >= att.window_start_ns) & (starts < att.window_start_ns + att.window_ns)


def _with_context(cost: OpCosts, events: Events, steps: Sequence[StepRow]) -> tuple[OpCosts, int]:
    """``cost`` with each paged decode attention op costed at its step's keys read and
    (query, key) pairs (``captured_cost.context_cost``); and how many such ops had no step
    with those counts (left uncosted)."""
    parts = [context_cost(s) for s in events.shapes.signatures]
    if not any(parts):
        return cost, 0
    is_host = np.isin(events.kind, HOST_KINDS)
    sid = np.where(is_host, events.shape_id, NO_VALUE)
    has = np.array([p is not None for p in parts] + [False])
    rows = np.flatnonzero(has[sid])
    starts = np.array([s.start_ns for s in steps], dtype=np.int64)
    ends = starts + np.array([s.dur_ns for s in steps], dtype=np.int64)
    at = np.searchsorted(starts, events.start_ns[rows], side="right") - 1
    flops, size, kind = cost.flops.copy(), cost.bytes.copy(), cost.kind.copy()
    unknown = 0
    for row, i in zip(rows.tolist(), at.tolist(), strict=True):
        part = parts[int(sid[row])]
        step = steps[i] if i >= 0 and events.start_ns[row] < ends[i] else None
        got = None if part is None or step is None else part.cost(step.pairs, step.keys)
        if got is None or part is None:
            unknown += 1
            continue
        flops[row], size[row], kind[row] = got[0], got[1], part.kind
    return OpCosts(flops, size, kind), unknown


def _op_kinds(
    spec: DeviceSpec,
    flops: npt.NDArray[np.float64],
    size: npt.NDArray[np.float64],
    kind: npt.NDArray[np.int8],
    time_ns: I64,
    source: str,
) -> tuple[list[OpKindRoofline], list[str]]:
    out, notes = [], []
    for k, name in enumerate(OP_KINDS):
        rows = np.flatnonzero((kind == k) & (time_ns > 0))
        if not len(rows):
            continue
        f, b, t = float(flops[rows].sum()), float(size[rows].sum()), int(time_ns[rows].sum())
        f_pct, b_pct = 100 * f * 1e9 / t / spec.flops, 100 * b * 1e9 / t / spec.bandwidth
        seconds = time_ns[rows] / 1e9
        over = (flops[rows] / seconds > spec.flops) | (size[rows] / seconds > spec.bandwidth)
        errors = peak_errors(f_pct, b_pct)
        notes += [f"{name} ops ({source}): {e}" for e in errors]
        if over.any():
            notes.append(
                f"{name} ops ({source}): {int(over.sum())} calls exceed a peak on their own (model "
                "errors: shapes that don't describe the work, or a time that misses it)"
                + (_CONTEXT_HINT if (name, source) == (ATTENTION, CAPTURE_SOURCE) else "")
            )
        out.append(
            OpKindRoofline(
                kind=name,
                ops=len(rows),
                compute_ops=int((flops[rows] >= spec.ridge * size[rows]).sum()),
                flops=f,
                bytes=b,
                intensity=f / b if b else 0.0,
                time_ns=t,
                flops_pct=None if f_pct > 100 else round(f_pct, 3),
                bandwidth_pct=None if b_pct > 100 else round(b_pct, 3),
                above_peak=int(over.sum()),
                model_error="; ".join(errors) or None,
                source=source,
            )
        )
    return out, notes


def _thread(events: Events, rows: npt.NDArray[np.intp]) -> I64:
    return events.pid[rows] * 1_000_003 + events.tid[rows]


def _roots(events: Events, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """The rows not nested inside another of ``rows`` on their thread, in start order."""
    if not len(rows):
        return rows
    th = _thread(events, rows)
    order = np.lexsort((-events.dur_ns[rows], events.start_ns[rows], th))
    rows, th = rows[order], th[order]
    keep = np.zeros(len(rows), dtype=bool)
    cuts = [0, *(np.flatnonzero(th[1:] != th[:-1]) + 1).tolist(), len(rows)]
    for a, z in itertools.pairwise(cuts):
        reach = np.maximum.accumulate(events.end_ns[rows[a:z]])
        keep[a:z] = events.start_ns[rows[a:z]] >= np.concatenate([[_MIN], reach[:-1]])
    return np.sort(rows[keep])


def _owner(
    events: Events, roots: npt.NDArray[np.intp], threads: I64, times: I64
) -> npt.NDArray[np.intp]:
    """Per query (thread, time): the index of the root holding it on that thread, else -1."""
    out = np.full(len(times), -1, dtype=np.intp)
    root_threads = _thread(events, roots)
    for th in np.unique(root_threads).tolist():
        mine = np.flatnonzero(root_threads == th)
        q = np.flatnonzero(threads == th)
        starts, ends = events.start_ns[roots[mine]], events.end_ns[roots[mine]]
        at = np.searchsorted(starts, times[q], side="right") - 1
        ok = (at >= 0) & (times[q] < ends[np.clip(at, 0, None)])
        out[q[ok]] = mine[at[ok]]
    return out


def _launched(
    events: Events, roots: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Device rows launched inside a root (their runtime call, by correlation id, lies in it
    on its thread) and the index of that root."""
    runtime = np.flatnonzero((events.kind == Kind.RUNTIME) & (events.correlation >= 0))
    dev = np.flatnonzero(np.isin(events.kind, DEVICE_KINDS) & (events.correlation >= 0))
    order = np.argsort(events.correlation[runtime], kind="stable")
    corr, runtime = events.correlation[runtime][order], runtime[order]
    if not len(corr) or not len(dev):
        return dev[:0], dev[:0]
    at = np.clip(np.searchsorted(corr, events.correlation[dev]), 0, len(corr) - 1)
    hit = corr[at] == events.correlation[dev]
    dev, launch = dev[hit], runtime[at[hit]]
    owner = _owner(events, roots, _thread(events, launch), events.start_ns[launch])
    return dev[owner >= 0], owner[owner >= 0]


def cover(att: Attribution, lo: I64, hi: I64) -> I64:
    """Per segment: how many of the intervals [lo, hi) hold it (``att`` is split at them)."""
    bounds = att.partition.bounds
    if len(bounds) < 2:
        return np.zeros(0, dtype=np.int64)
    lo, hi = np.clip(lo, bounds[0], bounds[-1]), np.clip(hi, bounds[0], bounds[-1])
    delta = np.zeros(len(bounds) + 1, dtype=np.int64)
    np.add.at(delta, np.searchsorted(bounds, lo), 1)
    np.add.at(delta, np.searchsorted(bounds, hi), -1)
    return np.cumsum(delta)[: len(bounds) - 1]
