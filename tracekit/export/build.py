"""Walk a run and emit its timeline into a sink, one rank at a time.

Per rank (one process, named by the rank's identity label):

- ``tracekit: buckets``: the attribution partition; each run of equal-level segments is one
  slice named by its bucket, with the winning family as the ``family`` argument (uncovered
  time is ``idle`` / family ``none``);
- ``tracekit: engine steps``: vLLM's step annotations as ``prefill`` / ``decode`` / ``mixed``
  slices with the request and token counts as arguments;
- one track per device stream (kernels, memcpy, memset), one per stream for GPU-projected
  annotations, and one per host thread (CPU ops, annotations, Python frames, runtime calls),
  holding the original events.

Run-wide: counter tracks from ``steps/`` (KV-cache usage, running and waiting requests) on the
process of the rank that runs each engine, and a ``tracekit: run`` process holding the regime
verdict as one slice over the analysed window. Flows come from ``tracekit.export.flows``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from tracekit.core.analysis import Analysis, RankResult
from tracekit.core.buckets import BUCKETS
from tracekit.core.partition import RankPartition
from tracekit.core.rundir import StepRecord, read_steps
from tracekit.core.trace_model import DEVICE_KINDS, Kind, RankTrace, Trace
from tracekit.export.flows import FlowPlan, plan_flows
from tracekit.export.timeline import (
    I64,
    Arg,
    Counter,
    Sink,
    Slices,
    Track,
    TrackKind,
    nest,
)
from tracekit.render.verdict import evidence_lines, runners_up

BUCKET_LANE = "tracekit: buckets"
STEP_LANE = "tracekit: engine steps"
RUN_PROCESS = "tracekit: run"
REGIME_LANE = "tracekit: regime"
COUNTERS = (  # (track name, unit, StepRecord field, scale)
    ("KV-cache usage (%)", "%", "kv_usage", 100.0),
    ("running requests", "requests", "running", 1.0),
    ("waiting requests", "requests", "waiting", 1.0),
)
KIND_CATEGORY = tuple(k.name.lower() for k in sorted(Kind))  # indexed by the kind code
STREAM_ORDER, THREAD_ORDER = 10, 1 << 20  # sibling order: tracekit lanes, streams, threads
# Synthetic ids sit above Linux's largest pid_max (2**22), so they never meet OS pids / tids.
SYNTHETIC_PID = (1 << 22) + 1
LANE_TID_BASE = 1 << 24


class _Ids:
    """Track uuids (unique in the file) and per-process lane ids for the Chrome JSON tids."""

    def __init__(self) -> None:
        self.uuid = 0
        self.lanes: dict[int, int] = {}

    def track(
        self,
        name: str,
        kind: TrackKind,
        pid: int,
        parent: int | None,
        order: int,
        tid: int | None = None,
        unit: str = "",
    ) -> Track:
        self.uuid += 1
        if tid is None:
            self.lanes[pid] = self.lanes.get(pid, 0) + 1
            tid = LANE_TID_BASE + self.lanes[pid]
        return Track(self.uuid, name, kind, pid, tid, parent, order, unit)


def emit_trace(
    trace: Trace,
    analysis: Analysis,
    partitions: Sequence[RankPartition | None],
    sink: Sink,
) -> dict[str, int]:
    """Everything above into ``sink``, from the trace's events and its Analysis with each
    rank's partition (the driver's ``keep_partitions``); returns the flow counts by kind."""
    steps = read_steps(Path(trace.run_dir)) if trace.run_dir else []
    starts = [int(r.events.start_ns.min()) for r in trace.ranks if len(r.events)]
    starts += [s.ts_ns for s in steps[:1]]
    sink.begin(min(starts) if starts else 0)
    plan = plan_flows(trace)
    ids = _Ids()
    pids = process_pids(trace)
    processes: list[Track] = []
    ranks = zip(trace.ranks, analysis.ranks, partitions, strict=True)
    for i, (rank, result, partition) in enumerate(ranks):
        proc = ids.track(rank.id.label, "process", pids[i], None, i, tid=pids[i])
        processes.append(proc)
        sink.track(proc)
        for batch in _rank_slices(rank, result, partition, proc, ids, plan, i, trace):
            sink.track(batch.track)
            sink.slices(batch)
    run_pid = SYNTHETIC_PID + len(pids)
    run = ids.track(RUN_PROCESS, "process", run_pid, None, len(pids), tid=run_pid)
    sink.track(run)
    for series in _counters(trace, steps, processes, run, ids):
        sink.track(series.track)
        sink.counter(series)
    if analysis.ranks:
        lane = ids.track(REGIME_LANE, "track", run.pid, run.uuid, 0)
        sink.track(lane)
        sink.slices(_regime_slice(lane, analysis))
    return dict(plan.counts)


def process_pids(trace: Trace) -> list[int]:
    """Each rank's main host pid where those are distinct and known, else synthetic ids."""
    mains = []
    for rank in trace.ranks:
        ev = rank.events
        host = ev.pid[~np.isin(ev.kind, (*DEVICE_KINDS, Kind.GPU_ANNOTATION)) & (ev.pid > 0)]
        values, counts = np.unique(host, return_counts=True)
        mains.append(int(values[counts.argmax()]) if len(values) else 0)
    if min(mains, default=1) > 0 and len(set(mains)) == len(mains):
        return mains
    return [SYNTHETIC_PID + i for i in range(len(mains))]


def _rank_slices(
    rank: RankTrace,
    result: RankResult,
    partition: RankPartition | None,
    proc: Track,
    ids: _Ids,
    plan: FlowPlan,
    index: int,
    trace: Trace,
) -> Iterator[Slices]:
    yield _bucket_lane(partition, ids.track(BUCKET_LANE, "track", proc.pid, proc.uuid, 0))
    if result.steps:
        yield _step_lane(result, ids.track(STEP_LANE, "track", proc.pid, proc.uuid, 1))
    yield from _event_tracks(rank, proc, ids, plan, index, trace)


def _bucket_lane(partition: RankPartition | None, track: Track) -> Slices:
    if partition is None:
        raise ValueError("the bucket lane needs the rank's partition (keep_partitions)")
    # The final buckets (roofline and KV-stall stages relabel segments), split where the
    # bucket or the family under it changes.
    bounds, winner, bucket = partition.bounds, partition.family, partition.bucket
    families = partition.families
    if not len(winner):
        return Slices(track, bounds[:0], bounds[:0], [], "bucket")
    change = (np.diff(winner) != 0) | (np.diff(bucket) != 0)
    first = np.concatenate([[0], np.flatnonzero(change) + 1])
    last = np.concatenate([first[1:], [len(winner)]])
    levels = winner[first].tolist()
    names = [BUCKETS[b] for b in bucket[first].tolist()]
    args: list[Mapping[str, Arg] | None] = [
        {"family": families[w] if w >= 0 else "none"} for w in levels
    ]
    return Slices(track, bounds[first], bounds[last], names, "bucket", args)


def _step_lane(result: RankResult, track: Track) -> Slices:
    steps = result.steps
    start = np.array([s.start_ns for s in steps], dtype=np.int64)
    order, end = nest(start, start + np.array([s.dur_ns for s in steps], dtype=np.int64))
    rows = [steps[i] for i in order.tolist()]
    args: list[Mapping[str, Arg] | None] = [
        {
            "prefill_requests": s.context_requests,
            "prefill_tokens": s.context_tokens,
            "decode_requests": s.generation_requests,
            "decode_tokens": s.generation_tokens,
        }
        for s in rows
    ]
    return Slices(track, start[order], end, [s.kind for s in rows], "step", args)


def _event_tracks(
    rank: RankTrace, proc: Track, ids: _Ids, plan: FlowPlan, index: int, trace: Trace
) -> Iterator[Slices]:
    ev = rank.events
    names = trace.names.names
    flows = plan.ranks[index]
    for name, kind, tid, order, rows in _groups(rank):
        track = ids.track(name, kind, proc.pid, proc.uuid, order, tid=tid)
        at, end = nest(ev.start_ns[rows], ev.end_ns[rows])
        ordered = rows[at]
        row_list = ordered.tolist()
        into = _positions(row_list, flows.into)
        at_begin, at_end = _split_targets(into, ev.start_ns[ordered], plan.source_start)
        yield Slices(
            track,
            ev.start_ns[ordered],
            end,
            [names[i] for i in ev.name_id[ordered].tolist()],
            [KIND_CATEGORY[k] for k in ev.kind[ordered].tolist()],
            None,
            _positions(row_list, flows.out),
            at_begin,
            at_end,
        )


def _positions(rows: list[int], by_row: Mapping[int, list[int]]) -> dict[int, list[int]]:
    if not by_row:
        return {}
    return {pos: by_row[row] for pos, row in enumerate(rows) if row in by_row}


def _split_targets(
    into: dict[int, list[int]], start: I64, source_start: Mapping[int, int]
) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Flow targets at the slice's begin, or at its end where it began before the source."""
    at_begin: dict[int, list[int]] = {}
    at_end: dict[int, list[int]] = {}
    for pos, flow_ids in into.items():
        t = int(start[pos])
        for flow in flow_ids:
            side = at_begin if t > source_start[flow] else at_end
            side.setdefault(pos, []).append(flow)
    return at_begin, at_end


def _groups(rank: RankTrace) -> Iterator[tuple[str, TrackKind, int | None, int, I64]]:
    """(track name, kind, tid, sibling order, rows) for each thread and stream of a rank.

    Host threads come first in the file (a launch precedes its kernels when a viewer reads
    flows in time order and breaks ties by file position); streams are listed first.
    """
    ev = rank.events
    device = np.isin(ev.kind, DEVICE_KINDS)
    projected = ev.kind == Kind.GPU_ANNOTATION
    many_devices = len(np.unique(ev.device[device | projected])) > 1
    host = ~(device | projected)
    many_pids = len(np.unique(ev.pid[host & (ev.pid > 0)])) > 1
    used_tids: set[int] = set()
    order = THREAD_ORDER
    for (p, tid), rows in _split(ev.pid, ev.tid, host):
        name = f"pid {p} thread {tid}" if many_pids else f"thread {tid}"
        if tid > 0 and tid not in used_tids:
            used_tids.add(tid)
            yield name, "thread", tid, order, rows
        else:
            yield (name if tid > 0 else f"other events {-tid - 2}"), "track", None, order, rows
        order += 1
    order = STREAM_ORDER
    for mask, what in ((device, "stream"), (projected, "annotations")):
        for (dev, stream), rows in _split(ev.device, ev.stream, mask):
            name = f"stream {stream}" + (f" (device {dev})" if many_devices else "")
            yield (name if what == "stream" else f"{name} annotations"), "track", None, order, rows
            order += 1


def _split(a: I64, b: I64, mask: np.ndarray) -> Iterator[tuple[tuple[int, int], I64]]:
    rows = np.flatnonzero(mask)
    if not len(rows):
        return
    keys = np.stack([a[rows], b[rows]], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    cuts = np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]
    for key, group in zip(uniq.tolist(), np.split(rows[order], cuts), strict=True):
        yield (int(key[0]), int(key[1])), group


def _counters(
    trace: Trace, steps: Sequence[StepRecord], processes: list[Track], run: Track, ids: _Ids
) -> Iterator[Counter]:
    """Counter tracks per engine, on the first rank of that DP replica (else the run)."""
    engines = sorted({s.engine for s in steps})
    for engine in engines:
        records = [s for s in steps if s.engine == engine]
        owner, prefix = _engine_owner(trace, processes, engine), ""
        if owner is None:
            owner, prefix = run, f"engine {engine}: "
        ts = np.array([s.ts_ns for s in records], dtype=np.int64)
        for k, (name, unit, attr, scale) in enumerate(COUNTERS):
            track = ids.track(prefix + name, "counter", owner.pid, owner.uuid, 2 + k, unit=unit)
            values = np.array([float(getattr(s, attr)) * scale for s in records])
            yield Counter(track, ts, values)


def _engine_owner(trace: Trace, processes: list[Track], engine: int) -> Track | None:
    for rank, proc in zip(trace.ranks, processes, strict=True):
        if rank.id.dp == engine or (rank.id.dp is None and engine == 0):
            return proc
    return None


def _regime_slice(track: Track, analysis: Analysis) -> Slices:
    regime, results = analysis.regime, analysis.ranks
    lo = min(r.window_start_ns for r in results)
    hi = max(r.window_start_ns + r.window_ns for r in results)
    args: dict[str, Arg] = {
        "regime": regime.name,
        "evidence": " | ".join(evidence_lines(analysis)),
        "runners_up": runners_up(regime),
        "advice": " | ".join(regime.advice),
    }
    return Slices(
        track,
        np.array([lo], dtype=np.int64),
        np.array([hi], dtype=np.int64),
        [f"regime: {regime.label}"],
        "regime",
        [args],
    )


__all__ = ["FlowPlan", "emit_trace", "process_pids"]
