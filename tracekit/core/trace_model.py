"""The trace model: one columnar event table per rank, names interned once per run.

Times are int64 nanoseconds on an absolute clock (see ``RankTrace.clock``). Kineto writes
float microseconds; the parser converts each value exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I8 = npt.NDArray[np.int8]

NO_VALUE = -1  # missing correlation / stream / device / external id / shape / size

#: one op input's recorded dims: a tensor's sizes, or a tensor list's (one tuple per tensor)
Dims = tuple[int, ...] | tuple[tuple[int, ...], ...]


class Kind(IntEnum):
    """What an event is. Device kinds run on an accelerator; the rest on the host."""

    OTHER = 0
    CPU_OP = 1
    ANNOTATION = 2  # record_function / user annotation on the host
    PYTHON = 3  # python_function (with_stack traces)
    RUNTIME = 4  # CUDA/HIP runtime or driver call
    KERNEL = 5
    MEMCPY = 6
    MEMSET = 7
    GPU_ANNOTATION = 8  # annotation projected on a device stream: not device activity


DEVICE_KINDS = (Kind.KERNEL, Kind.MEMCPY, Kind.MEMSET)
HOST_KINDS = (Kind.CPU_OP, Kind.ANNOTATION, Kind.PYTHON, Kind.RUNTIME)


class RankId(msgspec.Struct, frozen=True, omit_defaults=True):
    """Who a trace belongs to. ``source`` says where the identity came from."""

    rank: int | None = None
    world_size: int | None = None
    dp: int | None = None
    pp: int | None = None
    tp: int | None = None
    ep: int | None = None
    source: str = "order"

    @property
    def key(self) -> tuple[int | None, ...]:
        """Identity used for duplicate detection: two traces may never share it."""
        return (self.rank, self.dp, self.pp, self.tp, self.ep)

    @property
    def label(self) -> str:
        parts = [
            f"{k}{v}"
            for k, v in (("dp", self.dp), ("pp", self.pp), ("tp", self.tp), ("ep", self.ep))
            if v is not None
        ]
        head = f"rank {self.rank}" if self.rank is not None else "rank ?"
        return f"{head} ({' '.join(parts)})" if parts else head


class Signature(NamedTuple):
    """One op and what Kineto recorded of its inputs (``record_shapes=True``): per input its
    dims (``Input Dims``) and its type (``Input type``: ``c10::BFloat16``, ``float``,
    ``Scalar``, ``TensorList``, ``""`` for None, ...). The op's name is part of it, so an
    op's cost is known from its shape id alone."""

    op: str
    dims: tuple[Dims, ...]
    types: tuple[str, ...]


@dataclass(frozen=True)
class ShapeTable:
    """One rank's distinct (op, input dims, input types); ``Events.shape_id`` indexes
    ``signatures``. Interned while parsing: its size follows the distinct signatures, not the
    events."""

    signatures: tuple[Signature, ...] = ()  # (not a sequence itself: numpy keeps it whole)


#: the event table's columns (``Events`` also carries the shape table its ``shape_id`` indexes)
COLUMNS = (
    "start_ns",
    "dur_ns",
    "kind",
    "name_id",
    "pid",
    "tid",
    "correlation",
    "stream",
    "device",
    "external_id",
    "shape_id",
    "msg_bytes",
    "group_size",
)
#: columns a trace may lack entirely: then a read-only NO_VALUE view taking no memory
OPTIONAL_COLUMNS = (("shape_id", np.int32), ("msg_bytes", np.int64), ("group_size", np.int32))


@dataclass(frozen=True)
class Events:
    """Columnar events of one rank, sorted by start time. Arrays are never mutated.

    ``shape_id`` (int32, ``NO_VALUE`` when none was recorded) indexes ``shapes``, the rank's
    table of distinct input signatures: like a categorical column, the ids travel with their
    table. ``msg_bytes`` is a collective's message size from Kineto's collective args
    (``analyzers.rank.message_size.collective_bytes`` reads it per call), ``group_size`` the
    size of its communicator (Kineto's ``Group size``). Where a trace holds none, each is a
    read-only ``NO_VALUE`` view that takes no memory (and the default)."""

    start_ns: I64
    dur_ns: I64
    kind: I8
    name_id: I32
    pid: I64
    tid: I64
    correlation: I64
    stream: I64
    device: I64
    external_id: I64
    shape_id: I32 = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    msg_bytes: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    group_size: I32 = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    shapes: ShapeTable = field(default_factory=ShapeTable, compare=False)

    def __post_init__(self) -> None:
        rows = len(self.start_ns)
        for name, dtype in OPTIONAL_COLUMNS:
            if rows and not len(getattr(self, name)):  # left out: a constant taking no memory
                constant = np.broadcast_to(np.array(NO_VALUE, dtype=dtype), (rows,))
                object.__setattr__(self, name, constant)

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (to and from parse workers) without the constant columns' bytes."""
        columns = {k: getattr(self, k) for k in COLUMNS}
        for name, _ in OPTIONAL_COLUMNS:
            if columns[name].strides == (0,):
                columns[name] = columns[name][:0]  # rebuilt as a constant on the other side
        return (_unpickle_events, (columns, self.shapes))

    @cached_property
    def end_ns(self) -> I64:
        """Derived once per table (stages index it per event; never rebuild it per call)."""
        return self.start_ns + self.dur_ns

    def take(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Events:
        """A new table holding the selected rows (a boolean mask or row indices)."""
        return Events(**{k: getattr(self, k)[index] for k in COLUMNS}, shapes=self.shapes)

    def remap_names(self, mapping: I32) -> Events:
        """The same events with name ids translated through ``mapping``."""
        fields = {k: getattr(self, k) for k in COLUMNS}
        fields["name_id"] = mapping[self.name_id]
        return Events(**fields, shapes=self.shapes)


def _unpickle_events(columns: dict[str, Any], shapes: ShapeTable) -> Events:
    return Events(**columns, shapes=shapes)


@dataclass
class NameTable:
    """Names interned once per run; every rank's ``name_id`` indexes ``names``."""

    names: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def intern_all(self, names: list[str]) -> I32:
        """Ids for ``names`` (adding new ones), as an array parallel to the input."""
        setdefault = self.index.setdefault
        out = np.empty(len(names), dtype=np.int32)
        for i, name in enumerate(names):
            nid = setdefault(name, len(self.names))
            if nid == len(self.names):
                self.names.append(name)
            out[i] = nid
        return out

    def __getitem__(self, name_id: int) -> str:
        return self.names[name_id]

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class RankTrace:
    """One rank's events plus what the trace said about itself."""

    id: RankId
    path: str
    events: Events
    clock: str  # how absolute time was obtained, e.g. "baseTimeNanoseconds"
    devices: tuple[int, ...] = ()
    device_names: tuple[str, ...] = ()  # as the trace names them ("" on ROCm)
    #: what the spec table is looked up by: the name, with the device's property label after
    #: it where the table does not know the name (``tracekit.core.gpu_identify.device_key``)
    device_keys: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)  # events not modelled, by reason

    @property
    def has_device(self) -> bool:
        return bool(np.isin(self.events.kind, DEVICE_KINDS).any())


@dataclass(frozen=True)
class Trace:
    """A whole run: ranks sharing one name table, plus what could not be read."""

    source: str
    ranks: tuple[RankTrace, ...]
    names: NameTable
    warnings: tuple[str, ...] = ()
    manifest: dict[str, Any] | None = None
    run_dir: str | None = None

    def events_frame(self, rank_index: int = 0) -> pd.DataFrame:
        """The rank's event table as a pandas DataFrame (a view derived on demand)."""
        import pandas as pd

        ev = self.ranks[rank_index].events
        frame = pd.DataFrame({k: getattr(ev, k) for k in COLUMNS})
        frame["kind"] = pd.Categorical.from_codes(
            ev.kind.astype(np.int64), pd.Index([k.name.lower() for k in Kind])
        )
        names = pd.Categorical.from_codes(ev.name_id.astype(np.int64), pd.Index(self.names.names))
        frame.insert(0, "name", pd.Series(names))
        return frame
