"""Flow arrows: CPU launch → device work within a rank, PP send → recv across ranks.

**Launch → kernel.** A device event (kernel, memcpy, memset) and the runtime call that
launched it share a correlation id. Each device event with a matching runtime call gets its
own flow from that call, so a CUDA/HIP graph launch (one ``cudaGraphLaunch`` /
``hipGraphLaunch`` correlation shared by every replayed kernel) fans out to all its kernels.

**PP send → recv.** Pipeline stages are ranks with a ``pp`` identity; stage ``k`` sends to
stage ``k + 1`` of the same dp/tp/ep coordinates (how vLLM passes intermediate tensors).
The point-to-point events of each rank are

- vLLM CPU: the ``_C::shm_send_tensor_list`` / ``_C::shm_recv_tensor_list`` ops;
- NCCL: ``Send`` / ``Recv`` kernels, and ``SendRecv`` kernels whose launching runtime call
  runs inside a host op named ``nccl:send`` / ``nccl:recv`` (or ``c10d::send`` / ``recv``,
  ``isend`` / ``irecv``); a ``SendRecv`` kernel of a collective (all-to-all) is not p2p.

Nested repeats of one op (same thread, starting inside the previous one) count once. The
sends of stage ``k`` and the receives of stage ``k + 1`` are then paired **in time order**,
after dropping leading receives that ended before the first send began (they belong to sends
from before the sender's profiling window); extra events at either end stay unpaired, and a
pair whose receive ends before its send begins (impossible on aligned clocks) is dropped.

Each flow also records when its source slice begins: a viewer reads flows in time order and
drops one whose target it meets before its source, so the builder attaches a flow to its
target's end where the target began first (a receive posted before the send).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tracekit.core.trace_model import DEVICE_KINDS, Kind, NameTable, RankTrace, Trace

IDX = npt.NDArray[np.intp]

SHM_SEND = re.compile(r"shm_send_tensor_list")
SHM_RECV = re.compile(r"shm_recv_tensor_list")
NCCL_P2P_KERNEL = re.compile(r"nccl(?:Dev)?Kernel_(SendRecv|Send|Recv)(?=[_(<]|$)")
SEND_OP = re.compile(r"nccl:send|c10d::send|(?<![a-z])isend", re.IGNORECASE)
RECV_OP = re.compile(r"nccl:recv|c10d::recv|(?<![a-z])irecv", re.IGNORECASE)
HOST_OP_KINDS = (Kind.CPU_OP, Kind.ANNOTATION)


@dataclass
class RankFlows:
    """Per event row of one rank: the flow ids leaving it and arriving at it."""

    out: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    into: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class FlowPlan:
    ranks: list[RankFlows]
    counts: dict[str, int]
    source_start: dict[int, int] = field(default_factory=dict)  # flow id → source begin (ns)
    next_id: int = 1

    def new_ids(self, n: int) -> range:
        ids = range(self.next_id, self.next_id + n)
        self.next_id += n
        return ids


def plan_flows(trace: Trace) -> FlowPlan:
    """All flows of the run, with globally unique ids (launch flows first, then PP)."""
    plan = FlowPlan([RankFlows() for _ in trace.ranks], {"launch": 0, "pp": 0})
    for i, rank in enumerate(trace.ranks):
        launch, device = launch_pairs(rank)
        starts = rank.events.start_ns[launch].tolist()
        for flow, a, b, t in zip(
            plan.new_ids(len(launch)), launch.tolist(), device.tolist(), starts, strict=True
        ):
            plan.ranks[i].out[a].append(flow)
            plan.ranks[i].into[b].append(flow)
            plan.source_start[flow] = t
        plan.counts["launch"] += len(launch)
    stages = list(pp_pairs(trace))
    involved = sorted({i for pair in stages for i in pair})
    p2p = {i: p2p_rows(trace.ranks[i], trace.names) for i in involved}
    for src, dst in stages:
        sends, recvs = p2p[src][0], p2p[dst][1]
        pairs = match_in_order(trace.ranks[src], sends, trace.ranks[dst], recvs)
        for flow, (a, b) in zip(plan.new_ids(len(pairs)), pairs, strict=True):
            plan.ranks[src].out[a].append(flow)
            plan.ranks[dst].into[b].append(flow)
            plan.source_start[flow] = int(trace.ranks[src].events.start_ns[a])
        plan.counts["pp"] += len(pairs)
    return plan


def launch_pairs(rank: RankTrace) -> tuple[IDX, IDX]:
    """(runtime row, device row) for every device event whose launch is in the trace."""
    ev = rank.events
    runtime = np.flatnonzero((ev.kind == Kind.RUNTIME) & (ev.correlation >= 0))
    device = np.flatnonzero(np.isin(ev.kind, DEVICE_KINDS) & (ev.correlation >= 0))
    if not len(runtime) or not len(device):
        return np.empty(0, np.intp), np.empty(0, np.intp)
    corr = ev.correlation[runtime]
    order = np.argsort(corr, kind="stable")  # the first call wins a duplicated id
    sorted_corr = corr[order]
    at = np.searchsorted(sorted_corr, ev.correlation[device])
    at_clipped = np.minimum(at, len(sorted_corr) - 1)
    found = sorted_corr[at_clipped] == ev.correlation[device]
    return runtime[order[at_clipped[found]]], device[found]


def pp_pairs(trace: Trace) -> Iterator[tuple[int, int]]:
    """(sender rank index, receiver rank index): stage k → k + 1 at equal dp/tp/ep."""
    stages: dict[tuple[int | None, ...], dict[int, int]] = defaultdict(dict)
    for i, rank in enumerate(trace.ranks):
        if rank.id.pp is not None:
            stages[(rank.id.dp, rank.id.tp, rank.id.ep)][rank.id.pp] = i
    for by_pp in stages.values():
        for pp, i in sorted(by_pp.items()):
            if pp + 1 in by_pp:
                yield i, by_pp[pp + 1]


def _rows_named(
    rank: RankTrace, names: NameTable, kinds: tuple[Kind, ...], test: Callable[[str], bool]
) -> IDX:
    ev = rank.events
    rows = np.flatnonzero(np.isin(ev.kind, kinds))
    if not len(rows):
        return rows
    ids, inverse = np.unique(ev.name_id[rows], return_inverse=True)
    hit = np.array([test(names[int(i)]) for i in ids], dtype=bool)
    selected: IDX = rows[hit[inverse]]
    return selected


def p2p_rows(rank: RankTrace, names: NameTable) -> tuple[IDX, IDX]:
    """This rank's point-to-point sends and receives, in time order, outermost only."""
    ev = rank.events
    sends = [_rows_named(rank, names, HOST_OP_KINDS, lambda n: bool(SHM_SEND.search(n)))]
    recvs = [_rows_named(rank, names, HOST_OP_KINDS, lambda n: bool(SHM_RECV.search(n)))]
    kernels = _rows_named(rank, names, (Kind.KERNEL,), lambda n: bool(NCCL_P2P_KERNEL.search(n)))
    if len(kernels):
        kinds = [_kernel_direction(names[int(n)]) for n in ev.name_id[kernels]]
        both = kernels[[k == "SendRecv" for k in kinds]]
        sends.append(kernels[[k == "Send" for k in kinds]])
        recvs.append(kernels[[k == "Recv" for k in kinds]])
        if len(both):
            s, r = _direct_by_host_op(rank, names, both)
            sends.append(s)
            recvs.append(r)
    return _outermost(rank, np.concatenate(sends)), _outermost(rank, np.concatenate(recvs))


def _kernel_direction(name: str) -> str:
    match = NCCL_P2P_KERNEL.search(name)
    return match.group(1) if match else ""


def _direct_by_host_op(rank: RankTrace, names: NameTable, kernels: IDX) -> tuple[IDX, IDX]:
    """Split SendRecv kernels by the send/recv host op around their launching call."""
    ev = rank.events
    launch, device = launch_pairs(rank)
    launcher = dict(zip(device.tolist(), launch.tolist(), strict=True))
    ops = {
        "send": _rows_named(rank, names, HOST_OP_KINDS, lambda n: bool(SEND_OP.search(n))),
        "recv": _rows_named(rank, names, HOST_OP_KINDS, lambda n: bool(RECV_OP.search(n))),
    }
    out: dict[str, list[int]] = {"send": [], "recv": []}
    for k in kernels.tolist():
        call = launcher.get(k)
        if call is None:
            continue
        t = ev.start_ns[call]
        for direction, rows in ops.items():
            inside = (
                (ev.pid[rows] == ev.pid[call])
                & (ev.tid[rows] == ev.tid[call])
                & (ev.start_ns[rows] <= t)
                & (ev.start_ns[rows] + ev.dur_ns[rows] >= t)
            )
            if inside.any():
                out[direction].append(k)
                break
    return np.array(out["send"], dtype=np.intp), np.array(out["recv"], dtype=np.intp)


def _outermost(rank: RankTrace, rows: IDX) -> IDX:
    """Rows in time order, without those starting inside the previous kept one (per lane)."""
    ev = rank.events
    rows = rows[np.argsort(ev.start_ns[rows], kind="stable")]
    lane = np.where(np.isin(ev.kind[rows], DEVICE_KINDS), ev.stream[rows], ev.tid[rows])
    keep: list[int] = []
    last_end: dict[tuple[int, int], int] = {}
    for row, pid, ln in zip(rows.tolist(), ev.pid[rows].tolist(), lane.tolist(), strict=True):
        start, end = int(ev.start_ns[row]), int(ev.start_ns[row] + ev.dur_ns[row])
        if (pid, ln) in last_end and start < last_end[(pid, ln)]:
            continue
        keep.append(row)
        last_end[(pid, ln)] = end
    return np.array(keep, dtype=np.intp)


def match_in_order(
    sender: RankTrace, sends: IDX, receiver: RankTrace, recvs: IDX
) -> list[tuple[int, int]]:
    """Pair the i-th send with the i-th receive, after the leading-receive rule above."""
    if not len(sends) or not len(recvs):
        return []
    first_send = int(sender.events.start_ns[sends[0]])
    recv_end = receiver.events.start_ns[recvs] + receiver.events.dur_ns[recvs]
    recvs = (
        recvs[np.argmax(recv_end >= first_send) :] if (recv_end >= first_send).any() else recvs[:0]
    )
    n = min(len(sends), len(recvs))
    sends, recvs = sends[:n], recvs[:n]
    send_start = sender.events.start_ns[sends]
    plausible = receiver.events.start_ns[recvs] + receiver.events.dur_ns[recvs] > send_start
    return list(zip(sends[plausible].tolist(), recvs[plausible].tolist(), strict=True))
