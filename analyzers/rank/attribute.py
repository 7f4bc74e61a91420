"""Exclusive attribution: partition a rank's window into the DESIGN.md buckets.

The analysed window is the run's common window where the caller passes one (``window``: the
span in which every rank was profiled, ``analyzers.run.window``), else the rank's own window:

GPU ranks: the own window runs from the first to the last device event (kernel, memcpy, memset).
Device work is levelled by family (bucket priority first) and swept once, so overlapping
streams resolve by priority and a collective counts as *exposed* only where no work hides
it. Device-idle time is ``host`` where any host activity (ops, runtime calls, annotations,
Python frames; not synchronisation waits) is live, else ``idle``.

CPU-only ranks: the own window runs from the first to the last ``cpu_op`` or gloo span
(below). Ops nest, so each thread's ops are first flattened into self-time segments owned by
the innermost op; an op no rule names inherits the family of the op around it. Time inside
annotations / Python frames but outside any op is ``host`` (framework and scheduling
overhead), except for communication the backend records as annotations: gloo's
``gloo:recv`` / ``gloo:all_reduce`` … (``RecordScope::USER_SCOPE``; p2p on the calling thread,
outliving the ``c10d::`` op that started it, collectives on gloo's worker threads) enter the
sweep at their family's level, so a receive wait is bubble and a collective's wait is
collective, ahead of host.

A window override clips the sweep (and each op's time in the op tables) to it; the rank's
own window is kept next to it (``own_start_ns``, ``own_ns``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from analyzers.rank.classify import (
    COMPILE_INDEX,
    FAMILY_LEVEL,
    HOST_LEVEL,
    LEVEL_BUCKET,
    LEVELS,
    NOT_WORK,
    UNCLASSIFIED_INDEX,
)
from analyzers.rank.interval_sweep import Partition, sweep
from analyzers.rank.rules import FAMILY_BUCKET
from analyzers.run.window import Window
from tracekit.core.buckets import BUCKETS, HOST, IDLE
from tracekit.core.trace_model import DEVICE_KINDS, Events, Kind, NameTable

BUCKET_INDEX = {b: i for i, b in enumerate(BUCKETS)}
#: per family index (classify.FAMILIES order): its bucket under the name rules
FAMILY_BUCKET_INDEX = np.array([BUCKET_INDEX[b] for b in FAMILY_BUCKET.values()], dtype=np.int8)

I64 = npt.NDArray[np.int64]
_SYNC = re.compile(r"Synchroniz|StreamWaitEvent|EventQuery|StreamQuery", re.IGNORECASE)


@dataclass(frozen=True)
class Attribution:
    device: str  # "gpu" or "cpu"
    window_start_ns: int
    window_ns: int
    partition: Partition
    buckets: dict[str, int]
    families: dict[str, int]  # exclusive ns per family (and host_activity)
    overlapped: dict[str, int]  # per bucket: live but hidden under higher-priority work
    op_ns: I64  # per event, inside the window: device: its duration; CPU op: its self time
    op_family: npt.NDArray[np.int16]  # per event: family its time went to (CPU: inherited)
    #: per partition segment: index into BUCKETS. Starts as the winner's bucket (the name
    #: rules); later stages (roofline, KV stalls) relabel segments, and ``buckets`` is
    #: always the sum of segment lengths per label, so the partition stays exact.
    segment_bucket: npt.NDArray[np.int8]
    #: per event: index into BUCKETS its time is listed under in op tables
    op_bucket: npt.NDArray[np.int8]
    own_start_ns: int = 0  # the rank's own window (equal to the analysed one unless overridden)
    own_ns: int = 0


def attribute(
    events: Events,
    family: npt.NDArray[np.int16],
    names: NameTable,
    window: Window | None = None,
) -> Attribution:
    """The partition of ``window`` (None: the rank's own window, ``own_window``)."""
    own = own_window(events, family)
    lo, hi = own if window is None else window
    is_device = np.isin(events.kind, DEVICE_KINDS)
    if is_device.any():
        att = _attribute_gpu(events, family, is_device, names, lo, hi)
    else:
        att = _attribute_cpu(events, family, lo, hi)
    return replace(att, own_start_ns=own[0], own_ns=own[1] - own[0])


def own_window(events: Events, family: npt.NDArray[np.int16]) -> Window:
    """The span this rank was profiled over: its device events, else its CPU ops and its
    backend's communication spans (``family``: ``classify_events``), else its annotations /
    Python frames / runtime calls."""
    frame = np.flatnonzero(np.isin(events.kind, DEVICE_KINDS))
    if not len(frame):
        frame = np.flatnonzero(events.kind == Kind.CPU_OP)
        frame = np.union1d(frame, _comm_annotations(events, family))
    if not len(frame):
        frame = np.flatnonzero(np.isin(events.kind, (Kind.ANNOTATION, Kind.PYTHON, Kind.RUNTIME)))
    if not len(frame):
        lo = int(events.start_ns.min()) if len(events) else 0
        return lo, lo
    return int(events.start_ns[frame].min()), int(events.end_ns[frame].max())


def _comm_annotations(events: Events, family: npt.NDArray[np.int16]) -> npt.NDArray[np.intp]:
    """Annotations the rule table names as communication (``classify``: gloo's spans)."""
    return np.flatnonzero((events.kind == Kind.ANNOTATION) & (family != NOT_WORK))


def _host_rows(events: Events, family: npt.NDArray[np.int16]) -> npt.NDArray[np.intp]:
    host = np.isin(events.kind, (Kind.ANNOTATION, Kind.PYTHON, Kind.RUNTIME))
    return np.flatnonzero(host & ~((events.kind == Kind.ANNOTATION) & (family != NOT_WORK)))


def _clipped(start: I64, end: I64, lo: int, hi: int) -> I64:
    return np.clip(end, lo, hi) - np.clip(start, lo, hi)


def _attribute_gpu(
    events: Events,
    family: npt.NDArray[np.int16],
    is_device: npt.NDArray[np.bool_],
    names: NameTable,
    lo: int,
    hi: int,
) -> Attribution:
    start, end = events.start_ns, events.end_ns
    host = _host_activity(events, names)
    rows = np.flatnonzero(is_device)
    level = np.concatenate([FAMILY_LEVEL[family[rows]], np.full(host.sum(), HOST_LEVEL)])
    part = sweep(
        np.concatenate([start[rows], start[host]]),
        np.concatenate([end[rows], end[host]]),
        level,
        len(LEVELS),
        lo,
        hi,
    )
    op_ns = np.where(is_device, _clipped(start, end, lo, hi), 0)
    return _result("gpu", lo, hi, part, op_ns, family)


def _host_activity(events: Events, names: NameTable) -> npt.NDArray[np.bool_]:
    host = np.isin(events.kind, (Kind.CPU_OP, Kind.ANNOTATION, Kind.PYTHON, Kind.RUNTIME))
    runtime = np.flatnonzero(events.kind == Kind.RUNTIME)
    if len(runtime):
        ids, inverse = np.unique(events.name_id[runtime], return_inverse=True)
        is_sync = np.array([bool(_SYNC.search(names[int(i)])) for i in ids])
        host[runtime[is_sync[inverse]]] = False
    return host


def _attribute_cpu(events: Events, family: npt.NDArray[np.int16], lo: int, hi: int) -> Attribution:
    ops = np.flatnonzero(events.kind == Kind.CPU_OP)
    comm, hosts = _comm_annotations(events, family), _host_rows(events, family)
    seg_s, seg_e, seg_fam, seg_op, op_family = _flatten(events, family, ops)
    seg_ns = _clipped(seg_s, seg_e, lo, hi)
    self_ns = np.bincount(seg_op, weights=seg_ns, minlength=len(events)).astype(np.int64)
    start, end = events.start_ns, events.end_ns
    self_ns[comm] = _clipped(start[comm], end[comm], lo, hi)  # a wait has no children
    level = np.concatenate(
        [FAMILY_LEVEL[seg_fam], FAMILY_LEVEL[family[comm]], np.full(len(hosts), HOST_LEVEL)]
    )
    part = sweep(
        np.concatenate([seg_s, start[comm], start[hosts]]),
        np.concatenate([seg_e, end[comm], end[hosts]]),
        level,
        len(LEVELS),
        lo,
        hi,
    )
    return _result("cpu", lo, hi, part, self_ns, op_family)


def _flatten(
    events: Events,
    family: npt.NDArray[np.int16],
    ops: npt.NDArray[np.intp],
) -> tuple[I64, I64, npt.NDArray[np.int16], I64, npt.NDArray[np.int16]]:
    """Self-time segments of nested ops, per thread; unnamed ops inherit their parent's family,
    and every op under a run-time compilation range is compilation.

    Returns segment starts, ends, families and owning rows, and each event's effective family.
    """
    effective = family.copy()
    out_s: list[int] = []
    out_e: list[int] = []
    out_f: list[int] = []
    out_op: list[int] = []

    def emit(a: int, z: int, fam: int, op: int) -> None:
        if z > a:
            out_s.append(a)
            out_e.append(z)
            out_f.append(fam)
            out_op.append(op)

    keys = np.lexsort((-events.dur_ns[ops], events.start_ns[ops], events.tid[ops], events.pid[ops]))
    ordered = ops[keys]
    thread = events.pid[ordered] * 1_000_003 + events.tid[ordered]
    starts = events.start_ns[ordered].tolist()
    ends = events.end_ns[ordered].tolist()
    fams = family[ordered].tolist()
    rows = ordered.tolist()
    threads = thread.tolist()
    stack: list[tuple[int, int, int]] = []  # (end, family, row)
    cursor = 0
    current_thread = None
    for s, end_ns, own_family, row, th in zip(starts, ends, fams, rows, threads, strict=True):
        e, f = end_ns, own_family
        if th != current_thread:
            while stack:
                end, fam, op = stack.pop()
                emit(cursor, end, fam, op)
                cursor = max(cursor, end)
            current_thread, cursor = th, s
        while stack and stack[-1][0] <= s:
            end, fam, op = stack.pop()
            emit(cursor, end, fam, op)
            cursor = max(cursor, end)
        if stack:
            emit(cursor, s, stack[-1][1], stack[-1][2])
            e = min(e, stack[-1][0])  # a child never outlives its parent
            parent = stack[-1][1]
            f = parent if f in (NOT_WORK, UNCLASSIFIED_INDEX) or parent == COMPILE_INDEX else f
        if f == NOT_WORK:
            f = UNCLASSIFIED_INDEX
        effective[row] = f
        cursor = max(cursor, s)
        stack.append((e, f, row))
    while stack:
        end, fam, op = stack.pop()
        emit(cursor, end, fam, op)
        cursor = max(cursor, end)
    return (
        np.array(out_s, dtype=np.int64),
        np.array(out_e, dtype=np.int64),
        np.array(out_f, dtype=np.int16),
        np.array(out_op, dtype=np.int64),
        effective,
    )


def _result(
    device: str, lo: int, hi: int, part: Partition, op_ns: I64, op_family: npt.NDArray[np.int16]
) -> Attribution:
    buckets = dict.fromkeys(BUCKETS, 0)
    overlapped = dict.fromkeys(BUCKETS, 0)
    families: dict[str, int] = {}
    for lvl, name in enumerate(LEVELS):
        bucket = LEVEL_BUCKET[lvl]
        buckets[bucket] += int(part.exclusive_ns[lvl])
        if part.exclusive_ns[lvl]:
            families[name] = int(part.exclusive_ns[lvl])
        if bucket != HOST:  # host activity under device work is not hidden work
            overlapped[bucket] += int(part.active_ns[lvl] - part.exclusive_ns[lvl])
    buckets[IDLE] += part.uncovered_ns
    level_bucket = np.array([BUCKET_INDEX[b] for b in LEVEL_BUCKET], dtype=np.int8)
    segment_bucket = np.where(
        part.winner >= 0, level_bucket[np.clip(part.winner, 0, None)], BUCKET_INDEX[IDLE]
    ).astype(np.int8)
    return Attribution(
        device,
        lo,
        hi - lo,
        part,
        buckets,
        families,
        {k: v for k, v in overlapped.items() if v},
        op_ns,
        op_family,
        segment_bucket,
        np.where(op_family >= 0, FAMILY_BUCKET_INDEX[op_family], BUCKET_INDEX[IDLE]).astype(
            np.int8
        ),
    )


# --- relabelling: later stages move segments between buckets, never time -------------------


def split(att: Attribution, cuts: I64) -> Attribution:
    """The same attribution with segment boundaries added at ``cuts`` (inside the window)."""
    part = att.partition
    if not len(part.bounds):
        return att
    cuts = np.asarray(cuts, dtype=np.int64)
    cuts = cuts[(cuts > part.bounds[0]) & (cuts < part.bounds[-1])]
    new = np.setdiff1d(cuts, part.bounds)
    if not len(new):
        return att
    bounds = np.union1d(part.bounds, new)
    owner = np.searchsorted(part.bounds, bounds[:-1], side="right") - 1  # old segment per new
    partition = replace(part, bounds=bounds, winner=part.winner[owner])
    return replace(att, partition=partition, segment_bucket=att.segment_bucket[owner])


def segment_interval(att: Attribution, starts: I64, ends: I64) -> npt.NDArray[np.intp]:
    """Per segment: the index of the interval ``[starts[i], ends[i])`` holding it, else -1.

    Intervals must be sorted and disjoint, and ``att`` split at their edges.
    """
    bounds = att.partition.bounds
    if len(bounds) < 2 or not len(starts):
        return np.full(max(len(bounds) - 1, 0), -1, dtype=np.intp)
    at = np.searchsorted(starts, bounds[:-1], side="right") - 1
    ok = (at >= 0) & (bounds[1:] <= ends[np.clip(at, 0, None)])
    return np.where(ok, at, -1)


def relabel(
    att: Attribution, segment_bucket: npt.NDArray[np.int8], op_bucket: npt.NDArray[np.int8] | None
) -> Attribution:
    """New segment (and op) labels; the buckets are re-summed from the segments."""
    lengths = np.diff(att.partition.bounds)
    buckets = {b: int(lengths[segment_bucket == i].sum()) for i, b in enumerate(BUCKETS)}
    buckets[IDLE] += att.window_ns - sum(buckets.values())  # an empty window has no segments
    return replace(
        att,
        buckets=buckets,
        segment_bucket=segment_bucket,
        op_bucket=att.op_bucket if op_bucket is None else op_bucket,
    )
