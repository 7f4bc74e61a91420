"""A rank's time per op and kernel, by name and recorded shape: what a kernel diff matches.

The Analysis keeps a rank's top ops by name; a diff of two runs needs every op, told apart by
the input shapes the trace recorded (``record_shapes=True``). Time is the attribution's op
time (``Attribution.op_ns``): device time of kernels, copies and memsets on GPU ranks, self
time of host ops on CPU ranks, inside the analysed window. A host op's shape is its own; a
kernel's is the shape of the op that launched it (the host op with the kernel's external id,
Kineto's link from a launch to the innermost op around it), and that op's name goes with it.
The driver keeps the table next to the Analysis where asked (``keep_ops``), never in its JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from analyzers.rank.classify import FAMILIES
from tracekit.core.trace_model import NO_VALUE, Dims, Events, Kind

if TYPE_CHECKING:
    from analyzers.rank.rank_stages import RankState

I64 = npt.NDArray[np.int64]
KIND_TEXT = {
    Kind.KERNEL: "kernel",
    Kind.MEMCPY: "memcpy",
    Kind.MEMSET: "memset",
    Kind.CPU_OP: "cpu op",
}


@dataclass(frozen=True)
class OpTable:
    """Rows of (name, launching op, shape, kind, family) with their calls and time."""

    name: tuple[str, ...]
    op: tuple[str, ...]  # a kernel's launching op ("" for host ops, or where unknown)
    shape: tuple[str, ...]  # recorded input dims ("" where none was recorded)
    kind: tuple[str, ...]  # kernel, memcpy, memset, cpu op, ...
    family: tuple[str, ...]
    count: I64
    total_ns: I64

    def __len__(self) -> int:
        return len(self.name)


def op_table(state: RankState) -> OpTable | None:
    """The rank's op time by (name, shape); None before the attribute stage."""
    att, ev = state.attribution, state.trace.events
    if att is None:
        return None
    rows = np.flatnonzero(att.op_ns > 0)
    shape = _shape_ids(ev, rows)
    key = np.stack(
        [
            ev.name_id[rows].astype(np.int64),
            shape.astype(np.int64),
            ev.kind[rows].astype(np.int64),
            att.op_family[rows].astype(np.int64),
        ],
        axis=1,
    ).reshape(len(rows), 4)
    keys, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    total = np.bincount(inverse, weights=att.op_ns[rows], minlength=len(keys)).astype(np.int64)
    count = np.bincount(inverse, minlength=len(keys)).astype(np.int64)
    signatures = ev.shapes.signatures
    names, ops, shapes, kinds, families = [], [], [], [], []
    for name_id, shape_id, kind, family in keys.tolist():
        names.append(state.names[name_id])
        sig = signatures[shape_id] if shape_id != NO_VALUE else None
        host = kind == Kind.CPU_OP
        ops.append(sig.op if sig is not None and not host else "")
        shapes.append(", ".join(dims_text(d) for d in sig.dims) if sig is not None else "")
        kinds.append(KIND_TEXT.get(Kind(kind), Kind(kind).name.lower()))
        families.append(FAMILIES[family])
    return OpTable(
        tuple(names), tuple(ops), tuple(shapes), tuple(kinds), tuple(families), count, total
    )


def dims_text(dims: Dims) -> str:
    """One input's dims as the trace writes them: ``[4, 1024]``, ``[[2, 3], [2, 3]]``."""
    return "[" + ", ".join(dims_text(d) if isinstance(d, tuple) else str(d) for d in dims) + "]"


def _shape_ids(ev: Events, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.int32]:
    """Per row, its shape id: a host op's own; a device row's launching op's (by external id)."""
    out = ev.shape_id[rows].copy()
    device = np.isin(ev.kind[rows], (Kind.KERNEL, Kind.MEMCPY, Kind.MEMSET))
    out[device] = NO_VALUE
    ops = np.flatnonzero((ev.kind == Kind.CPU_OP) & (ev.shape_id >= 0) & (ev.external_id >= 0))
    want = np.flatnonzero(device & (ev.external_id[rows] >= 0))
    if not len(ops) or not len(want):
        return out
    order = np.argsort(ev.external_id[ops], kind="stable")
    ids, ops = ev.external_id[ops][order], ops[order]
    ext = ev.external_id[rows[want]]
    at = np.clip(np.searchsorted(ids, ext), 0, len(ids) - 1)
    hit = ids[at] == ext
    out[want[hit]] = ev.shape_id[ops[at[hit]]]
    return out
