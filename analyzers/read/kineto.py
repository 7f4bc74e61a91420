"""Parse one Kineto / torch.profiler (Chrome JSON) trace into a columnar event table.

The file is read streaming (``analyzers.read.json_stream``): decompressed block by block, its
``traceEvents`` array decoded in chunks of complete events into small typed structs that keep
only the fields the stages use, turned into numpy columns and dropped, so memory holds about
one block of text plus the columns, whatever the file's size. The other top-level keys are
read wherever they are (Kineto writes ``baseTimeNanoseconds`` after the events). A field
of another type than Kineto's is read, not refused (``analyzers.read.kineto_events``).
Timestamps are converted once to int64 nanoseconds: integers and small floats
arithmetically (exact: see ``kineto_events._EXACT_FLOAT_US``), large fractional floats
from their decimal text, never through a lossy float product.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from analyzers.read.column_table import ColumnTable
from analyzers.read.json_stream import BLOCK, Reader, check_value, decode_text
from analyzers.read.kineto_events import (
    ABSENT,
    BAD_TIME,
    EVENTS,
    TOP_LEVEL,
    Args,
    Event,
    count,
    group_sizes,
    msg_bytes,
    read_args,
    read_times,
    read_top_level,
)
from analyzers.read.kineto_values import as_int, signature, text_column
from tracekit.core.errors import TracekitError
from tracekit.core.trace_model import (
    COLUMNS,
    NO_VALUE,
    OPTIONAL_COLUMNS,
    Events,
    Kind,
    ShapeTable,
    Signature,
)

log = logging.getLogger(__name__)

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


_OUTLINE = msgspec.json.Decoder(dict[str, msgspec.Raw])  # what a non-object root is checked by
_ANY = msgspec.json.Decoder()  # each kept top-level key is read whatever its type
_NOT_A_LIST = msgspec.json.Decoder(list[msgspec.Raw] | None)
_MAX_BASE_NS = 4 * 10**18
_DTYPES = {"kind": np.int8, "name_id": np.int32, "shape_id": np.int32, "group_size": np.int32}
_BAD_SHAPES = "input shapes in a form not modelled ('Input Dims' / 'Input type')"


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
            elif key in TOP_LEVEL:
                fields[key] = decode_text(path, _ANY, text, at, key)
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
    fields = read_top_level(fields, builder.ignored)
    base = fields.get("baseTimeNanoseconds") or 0
    if not 0 <= base <= _MAX_BASE_NS:
        raise TracekitError(path, f"corrupt trace: baseTimeNanoseconds {base} out of range")
    ev = builder.events(base)
    if not len(ev):
        left_out = builder.ignored.get(BAD_TIME)
        why = f" ({left_out} {BAD_TIME})" if left_out else ""
        raise TracekitError(path, f"empty trace: no complete ('X') events{why}")
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
    for events, chunk, _ in reader.array(EVENTS):
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

    def add(self, events: list[Event], chunk: bytes) -> None:
        """One chunk of decoded events; ``chunk`` is their text (for exact timestamps)."""
        complete = [e for e in events if e.ph == "X"]
        begin_end = sum(1 for e in events if e.ph in ("B", "E"))
        if begin_end:
            key = "begin/end (B/E) events: only complete (X) events are modelled"
            self.ignored[key] = self.ignored.get(key, 0) + begin_end
        if not complete:
            return
        try:
            start, dur, complete = read_times(self.path, chunk, complete, self.ignored)
            if complete:
                self._columns(start, dur, complete)
        except (OverflowError, ValueError) as exc:
            raise TracekitError(
                self.path, f"corrupt trace: a value is out of range ({exc})"
            ) from None

    def _columns(self, start: np.ndarray, dur: np.ndarray, complete: list[Event]) -> None:
        if (dur < 0).any():
            raise TracekitError(
                self.path, f"corrupt trace: {int((dur < 0).sum())} negative durations"
            )
        cat_id = _intern(self.cats, text_column(list(map(_CAT, complete))))
        kind_of = np.array(
            [_CATEGORY_KIND.get(c.lower(), Kind.OTHER) for c in self.cats], dtype=np.int8
        )
        columns = {
            "start_ns": start,
            "dur_ns": dur,
            "name_id": _intern(self.names, text_column(list(map(_NAME, complete)))),
            "kind": kind_of[cat_id],
        }
        columns["pid"], columns["tid"] = self._ids(
            list(map(_PID, complete)), list(map(_TID, complete))
        )
        args, ids = read_args(complete, self.ignored)
        columns |= ids
        # most chunks hold no shapes or sizes (list.count compares by identity first: fast)
        dims = list(map(_DIMS, args))
        if dims.count(ABSENT) != len(args):
            columns["shape_id"] = self._shape_ids(args, dims, columns["name_id"])
        n = len(args)
        if list(map(_IN, args)).count(ABSENT) != n or list(map(_OUT, args)).count(ABSENT) != n:
            columns["msg_bytes"] = msg_bytes(args, self.ignored)
        if list(map(_GROUP, args)).count(ABSENT) != n:
            columns["group_size"] = group_sizes(args, self.ignored)
        self.table.append(columns)  # a column left out is NO_VALUE: held only once seen

    def _shape_ids(
        self, args: list[Args], dims: list[msgspec.Raw], name_ids: np.ndarray
    ) -> np.ndarray:
        """Per event: the id of its (name, raw signature text) (canonicalised in ``events``)."""
        out = np.full(len(args), NO_VALUE, dtype=np.int32)
        ids = self.signatures
        for i in [i for i, d in enumerate(dims) if d is not ABSENT]:
            types = args[i].types
            key = (int(name_ids[i]), bytes(dims[i]), bytes(types) if len(types) else b"[]")
            out[i] = ids.setdefault(key, len(ids))
        return out

    def _ids(self, pids: list[Any], tids: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """pid/tid: integers as they are (numbers in other forms read as ints), other values
        (labels) mapped to stable negative ids, numbered in event order (pid before tid), so
        chunk boundaries never change them."""
        if set(map(type, pids)) <= {int} and set(map(type, tids)) <= {int}:
            try:
                return np.array(pids, dtype=np.int64), np.array(tids, dtype=np.int64)
            except OverflowError:
                pass
        pids = [str(v) if (n := as_int(v)) is None else n for v in pids]
        tids = [str(v) if (n := as_int(v)) is None else n for v in tids]
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
                count(self.ignored, _BAD_SHAPES, bad)
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


_NAME, _CAT = attrgetter("name"), attrgetter("cat")
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
