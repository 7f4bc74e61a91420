"""Collective message sizes from the trace: bytes per call, for bus bandwidth.

Kineto writes ``In msg nelems`` / ``Out msg nelems`` / ``dtype`` on ``record_param_comms``
ops and (PyTorch ≥ 2.1) on NCCL kernels; the parser keeps max(in, out) × dtype bytes as
``Events.msg_bytes``. ``collective_bytes`` turns calls (kernels or host ops) into bytes per
call, linking a kernel to the host op that launched it, else falling back on the largest
tensor the collective ops recorded in their shapes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from analyzers.planning.op_cost import HOST_KINDS, tensors
from tracekit.core.trace_model import DEVICE_KINDS, NO_VALUE, Events, Kind

I64 = npt.NDArray[np.int64]
SIZE_SOURCE: Final = (
    "trace: Kineto collective args (max(in, out msg nelems) × dtype), else the largest "
    "recorded input tensor of the call or its launching op"
)


def collective_bytes(events: Events, rows: Iterable[int] | npt.NDArray[np.intp]) -> I64:
    """Message bytes of each call in ``rows`` (kernels or host ops), in NCCL's size convention
    (nccl-tests' "size": all-reduce the buffer, all-gather the gathered output, reduce-scatter
    the input, i.e. the larger of in and out); ``NO_VALUE`` where the trace doesn't say.

    1. the call's own ``msg_bytes`` (Kineto's ``In/Out msg nelems`` × ``dtype``);
    2. that of the innermost host op holding the call, on its thread: for a kernel the op
       around its launching runtime call (same correlation id), for a host op one around its
       start or inside it (e.g. ``record_param_comms`` inside ``c10d::allreduce_``);
    3. else the largest tensor recorded in the shapes of the call and of the collective ops
       (``nccl:*``, ``c10d::*``, ``record_param_comms``, vLLM's ``shm_*``) holding it, e.g.
       ``c10d::_allgather_base_``'s output over ``nccl:_all_gather_base``'s input shard.
    """
    rows = _rows(rows)
    out = linked(events, rows, events.msg_bytes)
    missing = np.flatnonzero(out < 0)
    if not len(missing):
        return out
    host = np.isin(events.kind, HOST_KINDS)
    largest = _largest_tensor(events)
    comms = _Candidates(events, np.flatnonzero((largest >= 0) & host & _comm_op(events)))
    if not len(comms.rows):
        out[missing] = np.maximum(largest[rows[missing]], NO_VALUE)
        return out
    for i, anchor in zip(missing.tolist(), _anchors(events, rows[missing]), strict=True):
        found = largest[np.concatenate([comms.holding(events, anchor), rows[i : i + 1]])]
        out[i] = found.max()  # NO_VALUE (-1) when nothing was recorded
    return out


def collective_groups(events: Events, rows: Iterable[int] | npt.NDArray[np.intp]) -> I64:
    """The communicator size of each call in ``rows`` (Kineto's ``Group size``), its own or
    that of the innermost host op holding it, as for message sizes; ``NO_VALUE`` unknown."""
    return linked(events, _rows(rows), events.group_size)


def linked(events: Events, rows: npt.NDArray[np.intp], column: npt.NDArray[Any]) -> I64:
    """Per call: ``column`` of the call itself, else of the innermost host op holding it on
    its thread (a kernel: the op around its launching runtime call, same correlation id; a
    host op: one around its start or inside it); ``NO_VALUE`` where neither has one."""
    out = column[rows].astype(np.int64)
    missing = np.flatnonzero(out < 0)
    if not len(missing):
        return out
    host = np.isin(events.kind, HOST_KINDS)
    known = _Candidates(events, np.flatnonzero((column >= 0) & host))
    if not len(known.rows):
        return out
    for i, anchor in zip(missing.tolist(), _anchors(events, rows[missing]), strict=True):
        held = known.holding(events, anchor)
        if len(held):
            out[i] = column[held[np.argmin(events.dur_ns[held])]]
    return out


def _rows(rows: Iterable[int] | npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    return np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.intp)


_COMM = re.compile(
    r"^(nccl:|gloo:|c10d::|_c10d_functional::|record_param_comms|_C::shm_|_C_custom_ar::"
    r"|vllm::(all_reduce|all_gather|reduce_scatter))"
)


def _comm_op(events: Events) -> npt.NDArray[np.bool_]:
    """Per event: its shape names a collective op (the shapes are all that names ops here)."""
    per_sig = [bool(_COMM.match(s.op)) for s in events.shapes.signatures] + [False]
    return np.array(per_sig, dtype=bool)[events.shape_id]


def _largest_tensor(events: Events) -> I64:
    """Per event: bytes of the largest recorded tensor input (``NO_VALUE`` without shapes)."""
    per_sig = [
        max((x.nbytes for x in tensors(s)), default=NO_VALUE) for s in events.shapes.signatures
    ]
    return np.array([*per_sig, NO_VALUE], dtype=np.int64)[events.shape_id]  # -1: the pad


def _anchors(events: Events, rows: npt.NDArray[np.intp]) -> list[tuple[int, int, int, int, bool]]:
    """Per call: (pid, tid, start, end, is_launch). A kernel's anchor is its launching runtime
    call (same correlation id); a host op's is itself."""
    runtime = np.flatnonzero((events.kind == Kind.RUNTIME) & (events.correlation >= 0))
    order = np.argsort(events.correlation[runtime], kind="stable")
    corr = events.correlation[runtime][order]
    out = []
    for call in rows.tolist():
        row, launch = call, False
        if events.kind[call] in DEVICE_KINDS:
            c = int(events.correlation[call])
            at = int(np.searchsorted(corr, c))
            if c < 0 or at >= len(corr) or corr[at] != c:
                out.append((0, 0, 0, -1, True))  # no launch in the trace: nothing to link
                continue
            row, launch = int(runtime[order[at]]), True
        start, end = int(events.start_ns[row]), int(events.end_ns[row])
        out.append((int(events.pid[row]), int(events.tid[row]), start, end, launch))
    return out


class _Candidates:
    """Host events that may hold a call, in start order, searched in a time window (the
    longest one's duration back from the call), so each call costs a few comparisons."""

    def __init__(self, events: Events, rows: npt.NDArray[np.intp]) -> None:
        self.rows, self.starts = rows, events.start_ns[rows]  # rows ascend: starts sorted
        self.reach = int(events.dur_ns[rows].max()) if len(rows) else 0

    def holding(
        self, events: Events, anchor: tuple[int, int, int, int, bool]
    ) -> npt.NDArray[np.intp]:
        """Those on the anchor's thread holding it (a launch), or holding its start or
        starting inside it (a host call)."""
        pid, tid, start, end, launch = anchor
        lo = int(np.searchsorted(self.starts, start - self.reach))
        hi = int(np.searchsorted(self.starts, start if launch else end, side="right"))
        rows = self.rows[lo:hi]
        if end < start or not len(rows):
            return rows[:0]
        s, e = events.start_ns[rows], events.end_ns[rows]
        same = (events.pid[rows] == pid) & (events.tid[rows] == tid)
        if launch:
            hit = same & (s <= start) & (e >= end)
        else:
            hit = same & (((s <= start) & (e > start)) | ((s >= start) & (s < end)))
        held: npt.NDArray[np.intp] = rows[hit]
        return held
