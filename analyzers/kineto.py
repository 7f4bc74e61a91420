"""Parse one Kineto / torch.profiler (Chrome JSON) trace into a columnar event table.

The document is first split into raw event slices (msgspec ``Raw``: no objects built), then
decoded chunk by chunk into small typed structs that keep only the fields the stages use and
turned into numpy columns, so at most one chunk of event objects is alive at a time.
Timestamps are converted once to int64 nanoseconds: integers and small floats
arithmetically (exact: see ``_EXACT_FLOAT_US``), large fractional floats from their
decimal text, never through a lossy float product.
"""

from __future__ import annotations

import gzip
import logging
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar, cast

import msgspec
import numpy as np
from isal import igzip

from tracekit.errors import TracekitError
from tracekit.model import NO_VALUE, Events, Kind

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


class _Args(msgspec.Struct, gc=False):
    correlation: int = NO_VALUE
    stream: int = NO_VALUE
    device: int = NO_VALUE
    external_id: int = msgspec.field(default=NO_VALUE, name="External id")


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


class _Outline(msgspec.Struct, gc=False):
    traceEvents: list[msgspec.Raw] | None = None  # noqa: N815 - Kineto's key
    baseTimeNanoseconds: int | None = None  # noqa: N815
    distributedInfo: dict[str, Any] | None = None  # noqa: N815
    deviceProperties: list[dict[str, Any]] | None = None  # noqa: N815
    vllm_version: str | None = None
    schemaVersion: int | None = None  # noqa: N815


_OUTLINE = msgspec.json.Decoder(_Outline)
_OUTLINE_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_EVENTS = msgspec.json.Decoder(list[_Event])
_RAW_TS = msgspec.json.Decoder(list[_RawTsEvent])
_NO_ARGS = _Args()
CHUNK_EVENTS = 16_384
# Bounds that keep every int64 sum (base + ts + dur) from overflowing: ~126 years in µs.
_MAX_US = 4e15
_MAX_BASE_NS = 4 * 10**18
_ARG_COLUMNS = ("correlation", "stream", "device", "external_id")


@dataclass(frozen=True)
class ParsedTrace:
    """What one file holds, before names are interned into the run's table."""

    events: Events  # name_id indexes ``names``
    names: list[str]
    clock: str
    distributed_info: dict[str, Any] | None
    device_properties: list[dict[str, Any]]
    metadata: dict[str, Any]
    ignored: dict[str, int]


def read_bytes(path: Path) -> bytes:
    """The file's JSON text, gunzipped where it is gzip; damage becomes a TracekitError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TracekitError(path, "no such file") from None
    except OSError as exc:
        raise TracekitError(path, f"cannot read: {exc.strerror or exc}") from None
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return cast(bytes, igzip.decompress(data))  # type: ignore[no-untyped-call]
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
        cause = "truncated gzip" if isinstance(exc, EOFError) else f"corrupt gzip ({exc})"
        raise TracekitError(path, cause) from None


def parse_trace(path: Path) -> ParsedTrace:
    """Decode ``path`` (``.json`` or ``.json.gz``) into columns. Raises TracekitError."""
    data = read_bytes(path)
    first = data[:4096].lstrip()[:1]
    if not first and not data.strip():
        raise TracekitError(path, "empty file")
    outline = _decode(path, lambda: _OUTLINE_LIST.decode(data) if first == b"[" else None)
    if outline is None:
        doc = _decode(path, lambda: _OUTLINE.decode(data))
        if doc.traceEvents is None:
            raise TracekitError(
                path, "not a trace: no 'traceEvents' (is this a Kineto/Chrome trace?)"
            )
        raws = doc.traceEvents
    else:
        doc, raws = _Outline(), outline
    base = doc.baseTimeNanoseconds or 0
    if not 0 <= base <= _MAX_BASE_NS:
        raise TracekitError(path, f"corrupt trace: baseTimeNanoseconds {base} out of range")
    builder = _Builder(path, base)
    for first_index in range(0, len(raws), CHUNK_EVENTS):
        builder.add(raws[first_index : first_index + CHUNK_EVENTS], first_index)
    del raws, outline
    doc.traceEvents = None
    ev = builder.events()
    if not len(ev):
        raise TracekitError(path, "empty trace: no complete ('X') events")
    meta = {"schemaVersion": doc.schemaVersion, "vllm_version": doc.vllm_version}
    return ParsedTrace(
        events=ev.take(np.argsort(ev.start_ns, kind="stable")),
        names=list(builder.names),
        clock="baseTimeNanoseconds" if base else "trace clock (no baseTimeNanoseconds)",
        distributed_info=doc.distributedInfo,
        device_properties=doc.deviceProperties or [],
        metadata={k: v for k, v in meta.items() if v is not None},
        ignored=builder.ignored,
    )


T = TypeVar("T")


def _decode(path: Path, decode: Callable[[], T], offset: int = 0) -> T:
    """Run a msgspec decode; its errors become one-line TracekitErrors."""
    try:
        return decode()
    except msgspec.ValidationError as exc:
        where = re.sub(r"\$\[(\d+)\]", lambda m: f"$.traceEvents[{int(m[1]) + offset}]", str(exc))
        raise TracekitError(path, f"not a valid Kineto trace ({where})") from None
    except msgspec.DecodeError as exc:
        raise TracekitError(path, f"invalid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise TracekitError(path, f"invalid JSON: bad UTF-8 at byte {exc.start}") from None


class _Builder:
    """Turns chunks of raw events into numpy columns; names interned across chunks."""

    def __init__(self, path: Path, base: int) -> None:
        self.path, self.base = path, base
        self.names: dict[str, int] = {}
        self.labels: dict[str, int] = {}  # string pid/tid → negative ids
        self.cats: dict[str, int] = {}
        self.ignored: dict[str, int] = {}
        self.parts: dict[str, list[np.ndarray]] = {k: [] for k in Events.__dataclass_fields__}

    def add(self, raws: list[msgspec.Raw], offset: int) -> None:
        chunk = b"[" + b",".join(raws) + b"]"
        events = _decode(self.path, lambda: _EVENTS.decode(chunk), offset)
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
        part = self.parts
        part["start_ns"].append(self._start_ns(chunk, complete))
        dur = _us_to_ns(np.array(list(map(_DUR, complete))))
        if (dur < 0).any():
            raise TracekitError(
                self.path, f"corrupt trace: {int((dur < 0).sum())} negative durations"
            )
        part["dur_ns"].append(dur)
        part["name_id"].append(_intern(self.names, list(map(_NAME, complete))))
        cat_id = _intern(self.cats, list(map(_CAT, complete)))
        kind_of = np.array(
            [_CATEGORY_KIND.get(c.lower(), Kind.OTHER) for c in self.cats], dtype=np.int8
        )
        part["kind"].append(kind_of[cat_id])
        part["pid"].append(self._ids(list(map(_PID, complete))))
        part["tid"].append(self._ids(list(map(_TID, complete))))
        args = [e.args or _NO_ARGS for e in complete]
        for name in _ARG_COLUMNS:
            part[name].append(
                np.fromiter(map(attrgetter(name), args), dtype=np.int64, count=len(args))
            )

    def _start_ns(self, chunk: bytes, complete: list[_Event]) -> np.ndarray:
        ts = np.array(list(map(_TS, complete)))
        if ts.dtype.kind != "f" or not len(ts) or np.abs(ts).max() < _EXACT_FLOAT_US:
            return _us_to_ns(ts) + self.base
        # Large fractional floats: re-read the timestamps' decimal text for exact nanoseconds.
        texts = [bytes(r.ts) for r in _RAW_TS.decode(chunk) if r.ph == "X"]
        try:
            exact = [_decimal_us_to_ns(t) for t in texts]
        except (InvalidOperation, ValueError) as exc:
            raise TracekitError(self.path, f"corrupt timestamp ({exc})") from None
        if max(abs(v) for v in exact) > _MAX_US * 1000:
            raise ValueError("a timestamp is beyond ±4e15 µs")
        return np.array(exact, dtype=np.int64) + self.base

    def _ids(self, values: list[int | str]) -> np.ndarray:
        """pid/tid: integers as they are, strings mapped to stable negative ids."""
        if all(type(v) is int for v in values):
            return np.array(values, dtype=np.int64)
        labels = self.labels
        return np.array(
            [v if type(v) is int else -2 - labels.setdefault(str(v), len(labels)) for v in values],
            dtype=np.int64,
        )

    def events(self) -> Events:
        empty = {"kind": np.int8, "name_id": np.int32}
        return Events(
            **{
                k: np.concatenate(v) if v else np.empty(0, empty.get(k, np.int64))
                for k, v in self.parts.items()
            }
        )


_NAME, _CAT, _TS, _DUR = (attrgetter(k) for k in ("name", "cat", "ts", "dur"))
_PID, _TID = attrgetter("pid"), attrgetter("tid")


def _intern(table: dict[str, int], values: list[str]) -> np.ndarray:
    """Ids of ``values`` in ``table``, adding new ones (the loops run in C: map, fromkeys)."""
    for value in dict.fromkeys(values):
        if value not in table:
            table[value] = len(table)
    return np.fromiter(map(table.__getitem__, values), dtype=np.int32, count=len(values))


def _us_to_ns(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in "iuf" or (len(arr) and np.abs(arr).max() > _MAX_US):
        raise ValueError("a timestamp or duration is beyond ±4e15 µs")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64) * 1000
    return np.rint(arr.astype(np.float64) * 1000.0).astype(np.int64)


def _decimal_us_to_ns(text: bytes) -> int:
    whole, dot, frac = text.partition(b".")
    if dot and len(frac) <= 3 and frac.isdigit() and b"e" not in whole.lower():
        sign = -1 if whole.startswith(b"-") else 1
        return int(whole) * 1000 + sign * int(frac.ljust(3, b"0"))
    return int((Decimal(text.decode()) * 1000).to_integral_value())
