"""Parse one Kineto / torch.profiler (Chrome JSON) trace into a columnar event table.

The document is decoded with msgspec straight into small typed structs that keep only the
fields the stages use, so no general object tree is built. Timestamps are converted once to
int64 nanoseconds: integers and small floats arithmetically (exact: see ``_EXACT_FLOAT_US``),
large fractional floats from their decimal text, never through a lossy float product.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, cast

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
    correlation: int | None = None
    stream: int | None = None
    device: int | None = None
    external_id: int | None = msgspec.field(default=None, name="External id")


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
    ts: msgspec.Raw = msgspec.Raw(b"0")


class _Doc(msgspec.Struct, gc=False):
    traceEvents: list[_Event] | None = None  # noqa: N815 - Kineto's key
    baseTimeNanoseconds: int | None = None  # noqa: N815
    distributedInfo: dict[str, Any] | None = None  # noqa: N815
    deviceProperties: list[dict[str, Any]] | None = None  # noqa: N815
    vllm_version: str | None = None
    schemaVersion: int | None = None  # noqa: N815


class _RawDoc(msgspec.Struct, gc=False):
    traceEvents: list[_RawTsEvent] = []  # noqa: N815


_DECODER = msgspec.json.Decoder(_Doc)
_LIST_DECODER = msgspec.json.Decoder(list[_Event])
_RAW_DECODER = msgspec.json.Decoder(_RawDoc)
_RAW_LIST_DECODER = msgspec.json.Decoder(list[_RawTsEvent])
_NO_ARGS = _Args()


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
    stripped = data.lstrip()
    if not stripped:
        raise TracekitError(path, "empty file")
    is_list = stripped[:1] == b"["
    try:
        if is_list:
            events, doc = _LIST_DECODER.decode(data), _Doc()
        else:
            doc = _DECODER.decode(data)
            events = doc.traceEvents if doc.traceEvents is not None else []
    except msgspec.ValidationError as exc:
        raise TracekitError(path, f"not a valid Kineto trace ({exc})") from None
    except msgspec.DecodeError as exc:
        raise TracekitError(path, f"invalid JSON ({exc})") from None
    if not is_list and doc.traceEvents is None:
        raise TracekitError(path, "not a trace: no 'traceEvents' (is this a Kineto/Chrome trace?)")

    ignored: dict[str, int] = {}
    complete = [e for e in events if e.ph == "X"]
    begin_end = sum(1 for e in events if e.ph in ("B", "E"))
    if begin_end:
        ignored["begin/end (B/E) events: only complete (X) events are modelled"] = begin_end
    if not complete:
        raise TracekitError(path, "empty trace: no complete ('X') events")

    base = doc.baseTimeNanoseconds
    start_ns = _ts_to_ns(path, data, is_list, events, complete, base or 0)
    clock = "baseTimeNanoseconds" if base else "trace clock (no baseTimeNanoseconds)"
    dur_ns = _us_to_ns([e.dur for e in complete])
    if (dur_ns < 0).any():
        raise TracekitError(path, f"corrupt trace: {int((dur_ns < 0).sum())} negative durations")
    names, name_id = _intern([e.name for e in complete])
    meta = {"schemaVersion": doc.schemaVersion, "vllm_version": doc.vllm_version}
    ev = Events(
        start_ns=start_ns,
        dur_ns=dur_ns,
        kind=np.array(
            [_CATEGORY_KIND.get(e.cat.lower(), Kind.OTHER) for e in complete], dtype=np.int8
        ),
        name_id=name_id,
        pid=_ids([e.pid for e in complete]),
        tid=_ids([e.tid for e in complete]),
        **_arg_columns(complete),
    )
    order = np.argsort(ev.start_ns, kind="stable")
    return ParsedTrace(
        events=ev.take(order),
        names=names,
        clock=clock,
        distributed_info=doc.distributedInfo,
        device_properties=doc.deviceProperties or [],
        metadata={k: v for k, v in meta.items() if v is not None},
        ignored=ignored,
    )


def _us_to_ns(values: list[int | float]) -> np.ndarray:
    arr = np.array(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64) * 1000
    return np.rint(arr.astype(np.float64) * 1000.0).astype(np.int64)


def _ts_to_ns(
    path: Path, data: bytes, is_list: bool, events: list[_Event], complete: list[_Event], base: int
) -> np.ndarray:
    ts = [e.ts for e in complete]
    if all(type(t) is int or abs(t) < _EXACT_FLOAT_US for t in ts):
        return _us_to_ns(ts) + base
    # Large fractional floats: re-read the timestamps' decimal text for exact nanoseconds.
    raw = _RAW_LIST_DECODER.decode(data) if is_list else _RAW_DECODER.decode(data).traceEvents
    texts = [bytes(r.ts) for r, e in zip(raw, events, strict=True) if e.ph == "X"]
    try:
        return np.array([_decimal_us_to_ns(t) for t in texts], dtype=np.int64) + base
    except (InvalidOperation, ValueError) as exc:
        raise TracekitError(path, f"corrupt timestamp ({exc})") from None


def _decimal_us_to_ns(text: bytes) -> int:
    whole, dot, frac = text.partition(b".")
    if dot and len(frac) <= 3 and frac.isdigit() and b"e" not in whole.lower():
        sign = -1 if whole.startswith(b"-") else 1
        return int(whole) * 1000 + sign * int(frac.ljust(3, b"0"))
    return int((Decimal(text.decode()) * 1000).to_integral_value())


def _intern(names: list[str]) -> tuple[list[str], np.ndarray]:
    index: dict[str, int] = {}
    ids = np.fromiter(
        (index.setdefault(n, len(index)) for n in names), dtype=np.int32, count=len(names)
    )
    return list(index), ids


def _ids(values: list[int | str]) -> np.ndarray:
    """pid/tid columns: integers as they are, strings mapped to stable negative ids."""
    if all(type(v) is int for v in values):
        return np.array(values, dtype=np.int64)
    labels: dict[str, int] = {}
    return np.array(
        [v if type(v) is int else -2 - labels.setdefault(str(v), len(labels)) for v in values],
        dtype=np.int64,
    )


def _arg_columns(events: list[_Event]) -> dict[str, np.ndarray]:
    args = [e.args or _NO_ARGS for e in events]

    def column(values: list[int | None]) -> np.ndarray:
        return np.array([NO_VALUE if v is None else v for v in values], dtype=np.int64)

    return {
        "correlation": column([a.correlation for a in args]),
        "stream": column([a.stream for a in args]),
        "device": column([a.device for a in args]),
        "external_id": column([a.external_id for a in args]),
    }
