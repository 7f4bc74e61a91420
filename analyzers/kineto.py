"""Parse one Kineto / torch.profiler (Chrome JSON) trace into a columnar event table.

The file is read streaming (``analyzers.stream``): decompressed block by block, its
``traceEvents`` array decoded in chunks of complete events into small typed structs that keep
only the fields the stages use, turned into numpy columns and dropped, so memory holds about
one block of text plus the columns, whatever the file's size. The other top-level keys are
read wherever they are (Kineto writes ``baseTimeNanoseconds`` after the events).
Timestamps are converted once to int64 nanoseconds: integers and small floats
arithmetically (exact: see ``_EXACT_FLOAT_US``), large fractional floats from their
decimal text, never through a lossy float product.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import InvalidOperation
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from analyzers.column_table import ColumnTable
from analyzers.kineto_values import MAX_US, decimal_us_to_ns, signature, us_to_ns
from analyzers.op_cost import dtype_size
from analyzers.stream import BLOCK, Reader, check_value, decode_text
from tracekit.errors import TracekitError
from tracekit.model import (
    COLUMNS,
    NO_VALUE,
    OPTIONAL_COLUMNS,
    Events,
    Kind,
    ShapeTable,
    Signature,
)

log = logging.getLogger(__name__)

# |ts| below 2**42 µs: a float parsed from a decimal with up to 3 fractional digits, times
# 1000 and rounded, gives back the exact integer nanoseconds (parse error + product error
# < 0.5 ns). Kineto's relative timestamps exceed this after ~50 days of process uptime.
_EXACT_FLOAT_US = float(2**42)

_CATEGORY_KIND: dict[str, Kind] = {
    "cpu_op": Kind.CPU_OP,
    "operator": Kind.CPU_OP,
    "user_annotation": Kind.ANNOTATION,
    "python_function": Kind.PYTHON,
    "cuda_runtime": Kind.RUNTIME,
    "cuda_driver": Kind.RUNTIME,
    "runtime": Kind.RUNTIME,
    "kernel": Kind.KERNEL,
    "gpu_memcpy": Kind.MEMCPY,
    "memcpy": Kind.MEMCPY,
    "gpu_memset": Kind.MEMSET,
    "memset": Kind.MEMSET,
    "gpu_user_annotation": Kind.GPU_ANNOTATION,
}


_ABSENT = msgspec.Raw()


class _Args(msgspec.Struct, gc=False):
    correlation: int = NO_VALUE
    stream: int = NO_VALUE
    device: int = NO_VALUE
    external_id: int = msgspec.field(default=NO_VALUE, name="External id")
    # record_shapes: kept as text, interned per distinct signature, decoded once each
    # (msgspec.Raw takes no union: an empty Raw means absent)
    dims: msgspec.Raw = msgspec.field(default=_ABSENT, name="Input Dims")
    types: msgspec.Raw = msgspec.field(default=_ABSENT, name="Input type")
    # collectives (record_param_comms ops, NCCL kernels): decoded only where present
    in_nelems: msgspec.Raw = msgspec.field(default=_ABSENT, name="In msg nelems")
    out_nelems: msgspec.Raw = msgspec.field(default=_ABSENT, name="Out msg nelems")
    dtype: msgspec.Raw = _ABSENT
    group: msgspec.Raw = msgspec.field(default=_ABSENT, name="Group size")


class _Event(msgspec.Struct, gc=False):
    ph: str = ""
    name: str = ""
    cat: str = ""
    ts: int | float = 0
    dur: int | float = 0
    pid: int | str = 0
    tid: int | str = 0
    args: _Args | None = None


class _RawTsEvent(msgspec.Struct, gc=False):
    ph: str = ""
    ts: msgspec.Raw = msgspec.Raw(b"0")


_EVENTS = msgspec.json.Decoder(list[_Event])
_RAW_TS = msgspec.json.Decoder(list[_RawTsEvent])
_OUTLINE = msgspec.json.Decoder(dict[str, msgspec.Raw])  # what a non-object root is checked by
#: the top-level keys kept, wherever they are in the document, and what each must be
_FIELDS: dict[str, msgspec.json.Decoder[Any]] = {
    "baseTimeNanoseconds": msgspec.json.Decoder(int | None),
    "distributedInfo": msgspec.json.Decoder(dict[str, Any] | None),
    "deviceProperties": msgspec.json.Decoder(list[dict[str, Any]] | None),
    "vllm_version": msgspec.json.Decoder(str | None),
    "schemaVersion": msgspec.json.Decoder(int | None),
}
_NOT_A_LIST = msgspec.json.Decoder(list[msgspec.Raw] | None)
_NO_ARGS = _Args()
_MAX_BASE_NS = 4 * 10**18
_ARG_COLUMNS = ("correlation", "stream", "device", "external_id")
_DTYPES = {"kind": np.int8, "name_id": np.int32, "shape_id": np.int32, "group_size": np.int32}
_COUNT = msgspec.json.Decoder(int)
_TEXT = msgspec.json.Decoder(str)
_BAD_SHAPES = "input shapes in a form not modelled ('Input Dims' / 'Input type')"
_BAD_SIZES = "collective message sizes not modelled ('In/Out msg nelems', 'dtype')"
_BAD_GROUP = "collective group sizes not modelled ('Group size')"


@dataclass(frozen=True)
class ParsedTrace:
    """What one file holds, before names are interned into the run's table."""

    events: Events  # name_id indexes ``names``; shape_id its own ``events.shapes``
    names: list[str]
    clock: str
    distributed_info: dict[str, Any] | None
    device_properties: list[dict[str, Any]]
    metadata: dict[str, Any]
    ignored: dict[str, int]


def parse_trace(path: Path, block: int = BLOCK) -> ParsedTrace:
    """Decode ``path`` (``.json`` or ``.json.gz``) into columns, streaming: memory stays
    about one block of text plus the columns. Raises TracekitError."""
    reader = Reader(path, block)
    first = reader.peek()
    if first < 0:
        raise TracekitError(path, "empty file")
    fields: dict[str, Any] = {}
    builder: _Builder | None = None
    if first == ord("["):  # the bare list form
        builder = _read_events(reader, path)
    elif first == ord("{"):
        for key in reader.members():
            if key == "traceEvents" and reader.peek() == ord("["):
                builder = _read_events(reader, path)  # a repeated key: the last one wins
                continue
            at = reader.base + reader.pos
            text = reader.value()
            if key == "traceEvents" and decode_text(path, _NOT_A_LIST, text, at, key) is None:
                builder = None
            elif key in _FIELDS:
                fields[key] = decode_text(path, _FIELDS[key], text, at, key)
            else:
                check_value(path, text, at)
        if builder is None:
            reader.end()
            raise TracekitError(
                path, "not a trace: no 'traceEvents' (is this a Kineto/Chrome trace?)"
            )
    else:
        decode_text(path, _OUTLINE, reader.value())  # raises: the root is not an object
    reader.end()
    if builder is None:  # pragma: no cover - every branch above sets it or raises
        raise TracekitError(path, "not a trace: no 'traceEvents'")
    base = fields.get("baseTimeNanoseconds") or 0
    if not 0 <= base <= _MAX_BASE_NS:
        raise TracekitError(path, f"corrupt trace: baseTimeNanoseconds {base} out of range")
    ev = builder.events(base)
    if not len(ev):
        raise TracekitError(path, "empty trace: no complete ('X') events")
    meta = {k: fields.get(k) for k in ("schemaVersion", "vllm_version")}
    return ParsedTrace(
        events=ev,
        names=list(builder.names),
        clock="baseTimeNanoseconds" if base else "trace clock (no baseTimeNanoseconds)",
        distributed_info=fields.get("distributedInfo"),
        device_properties=fields.get("deviceProperties") or [],
        metadata={k: v for k, v in meta.items() if v is not None},
        ignored=builder.ignored,
    )


def _read_events(reader: Reader, path: Path) -> _Builder:
    builder = _Builder(path)
    for events, chunk, _ in reader.array(_EVENTS):
        builder.add(events, chunk)
    return builder


class _Builder:
    """Turns chunks of raw events into numpy columns; names interned across chunks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names: dict[str, int] = {}
        self.labels: dict[str, int] = {}  # string pid/tid → negative ids
        self.cats: dict[str, int] = {}
        self.ignored: dict[str, int] = {}
        dtypes = {k: _DTYPES.get(k, np.int64) for k in COLUMNS}
        self.table = ColumnTable(dtypes, optional=tuple(k for k, _ in OPTIONAL_COLUMNS))
        #: (name id, raw 'Input Dims' text, raw 'Input type' text) → raw shape id
        self.signatures: dict[tuple[int, bytes, bytes], int] = {}

    def add(self, events: list[_Event], chunk: bytes) -> None:
        """One chunk of decoded events; ``chunk`` is their text (for exact timestamps)."""
        complete = [e for e in events if e.ph == "X"]
        begin_end = sum(1 for e in events if e.ph in ("B", "E"))
        if begin_end:
            key = "begin/end (B/E) events: only complete (X) events are modelled"
            self.ignored[key] = self.ignored.get(key, 0) + begin_end
        if not complete:
            return
        try:
            self._columns(chunk, complete)
        except (OverflowError, ValueError) as exc:
            raise TracekitError(
                self.path, f"corrupt trace: a value is out of range ({exc})"
            ) from None

    def _columns(self, chunk: bytes, complete: list[_Event]) -> None:
        dur = us_to_ns(np.array(list(map(_DUR, complete))))
        if (dur < 0).any():
            raise TracekitError(
                self.path, f"corrupt trace: {int((dur < 0).sum())} negative durations"
            )
        cat_id = _intern(self.cats, list(map(_CAT, complete)))
        kind_of = np.array(
            [_CATEGORY_KIND.get(c.lower(), Kind.OTHER) for c in self.cats], dtype=np.int8
        )
        columns = {
            "start_ns": self._start_ns(chunk, complete),
            "dur_ns": dur,
            "name_id": _intern(self.names, list(map(_NAME, complete))),
            "kind": kind_of[cat_id],
        }
        columns["pid"], columns["tid"] = self._ids(
            list(map(_PID, complete)), list(map(_TID, complete))
        )
        args = [e.args or _NO_ARGS for e in complete]
        for name in _ARG_COLUMNS:
            columns[name] = np.fromiter(map(attrgetter(name), args), np.int64, len(args))
        # most chunks hold no shapes or sizes (list.count compares by identity first: fast)
        dims = list(map(_DIMS, args))
        if dims.count(_ABSENT) != len(args):
            columns["shape_id"] = self._shape_ids(args, dims, columns["name_id"])
        n = len(args)
        if list(map(_IN, args)).count(_ABSENT) != n or list(map(_OUT, args)).count(_ABSENT) != n:
            columns["msg_bytes"] = self._msg_bytes(args)
        if list(map(_GROUP, args)).count(_ABSENT) != n:
            columns["group_size"] = self._group_sizes(args)
        self.table.append(columns)  # a column left out is NO_VALUE: held only once seen

    def _shape_ids(
        self, args: list[_Args], dims: list[msgspec.Raw], name_ids: np.ndarray
    ) -> np.ndarray:
        """Per event: the id of its (name, raw signature text) (canonicalised in ``events``)."""
        out = np.full(len(args), NO_VALUE, dtype=np.int32)
        ids = self.signatures
        for i in [i for i, d in enumerate(dims) if d is not _ABSENT]:
            types = args[i].types
            key = (int(name_ids[i]), bytes(dims[i]), bytes(types) if len(types) else b"[]")
            out[i] = ids.setdefault(key, len(ids))
        return out

    def _msg_bytes(self, args: list[_Args]) -> np.ndarray:
        """Per event: max(in, out) message elements × dtype bytes, where Kineto recorded them
        (NCCL's size convention: the all-gathered output, the reduce-scattered input)."""
        out = np.full(len(args), NO_VALUE, dtype=np.int64)
        for i, a in enumerate(args):
            if a.in_nelems is _ABSENT and a.out_nelems is _ABSENT:
                continue
            try:
                count = max(_COUNT.decode(n) for n in (a.in_nelems, a.out_nelems) if len(n))
                size = dtype_size(_TEXT.decode(a.dtype)) if len(a.dtype) else None
            except msgspec.DecodeError:
                size = None
            if size is None or not 0 <= count * size < 2**62:
                self.ignored[_BAD_SIZES] = self.ignored.get(_BAD_SIZES, 0) + 1
                continue
            out[i] = count * size
        return out

    def _group_sizes(self, args: list[_Args]) -> np.ndarray:
        """Per event: its communicator's size (Kineto's ``Group size``), where recorded."""
        out = np.full(len(args), NO_VALUE, dtype=np.int32)
        for i, a in enumerate(args):
            if a.group is _ABSENT:
                continue
            try:
                size = _COUNT.decode(a.group)
            except msgspec.DecodeError:
                size = 0
            if not 0 < size < 2**31:
                self.ignored[_BAD_GROUP] = self.ignored.get(_BAD_GROUP, 0) + 1
                continue
            out[i] = size
        return out

    def _start_ns(self, chunk: bytes, complete: list[_Event]) -> np.ndarray:
        ts = np.array(list(map(_TS, complete)))
        if ts.dtype.kind != "f" or not len(ts) or np.abs(ts).max() < _EXACT_FLOAT_US:
            return us_to_ns(ts)
        # Large fractional floats: re-read the timestamps' decimal text for exact nanoseconds.
        texts = [bytes(r.ts) for r in _RAW_TS.decode(chunk) if r.ph == "X"]
        try:
            exact = [decimal_us_to_ns(t) for t in texts]
        except (InvalidOperation, ValueError) as exc:
            raise TracekitError(self.path, f"corrupt timestamp ({exc})") from None
        if max(abs(v) for v in exact) > MAX_US * 1000:
            raise ValueError("a timestamp is beyond ±4e15 µs")
        return np.array(exact, dtype=np.int64)

    def _ids(self, pids: list[int | str], tids: list[int | str]) -> tuple[np.ndarray, np.ndarray]:
        """pid/tid: integers as they are, strings mapped to stable negative ids, numbered in
        event order (pid before tid), so chunk boundaries never change them."""
        if all(type(v) is int for v in pids) and all(type(v) is int for v in tids):
            return np.array(pids, dtype=np.int64), np.array(tids, dtype=np.int64)
        labels = self.labels
        for pid, tid in zip(pids, tids, strict=True):
            if type(pid) is not int:
                labels.setdefault(str(pid), len(labels))
            if type(tid) is not int:
                labels.setdefault(str(tid), len(labels))
        pid_ids = [v if type(v) is int else -2 - labels[str(v)] for v in pids]
        tid_ids = [v if type(v) is int else -2 - labels[str(v)] for v in tids]
        return np.array(pid_ids, dtype=np.int64), np.array(tid_ids, dtype=np.int64)

    def events(self, base: int) -> Events:
        """The columns, sorted by start, on the ``base`` clock (one column copied at a time)."""
        columns = self.table.finish()
        start = columns["start_ns"]
        start += base
        if len(start) > 1 and not bool((start[1:] >= start[:-1]).all()):
            order = np.argsort(start, kind="stable")
            for key in columns:
                if columns[key].strides != (0,):  # a constant column stays as it is
                    columns[key] = columns[key][order]
        shapes, canonical = self._shape_table()
        if len(canonical):
            raw = columns["shape_id"]
            has = raw >= 0
            raw[has] = canonical[raw[has]]
            bad = int((raw == _UNREADABLE).sum())
            if bad:
                raw[raw == _UNREADABLE] = NO_VALUE
                self.ignored[_BAD_SHAPES] = self.ignored.get(_BAD_SHAPES, 0) + bad
        return Events(**columns, shapes=shapes)

    def _shape_table(self) -> tuple[ShapeTable, np.ndarray]:
        """The distinct signatures, decoded once each, and each raw id's canonical id
        (texts that differ only in spacing become one signature; unreadable ones -2)."""
        canonical = np.full(len(self.signatures), _UNREADABLE, dtype=np.int32)
        seen: dict[Signature, int] = {}
        names = list(self.names)
        for (name_id, dims, types), raw_id in self.signatures.items():
            sig = signature(names[name_id], dims, types)
            if sig is not None:
                canonical[raw_id] = seen.setdefault(sig, len(seen))
        self.signatures = {}
        return ShapeTable(tuple(seen)), canonical


_NAME, _CAT, _TS, _DUR = (attrgetter(k) for k in ("name", "cat", "ts", "dur"))
_PID, _TID = attrgetter("pid"), attrgetter("tid")
_DIMS, _IN, _OUT = (attrgetter(k) for k in ("dims", "in_nelems", "out_nelems"))
_GROUP = attrgetter("group")
_UNREADABLE = -2


def _intern(table: dict[str, int], values: list[str]) -> np.ndarray:
    """Ids of ``values`` in ``table``, adding new ones (the loops run in C: map, fromkeys)."""
    for value in dict.fromkeys(values):
        if value not in table:
            table[value] = len(table)
    return np.fromiter(map(table.__getitem__, values), dtype=np.int32, count=len(values))
