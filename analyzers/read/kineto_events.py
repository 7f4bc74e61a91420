"""Kineto events as decoded from the text, and their fields read into columns.

Every field is decoded whatever its JSON type and read by ``kineto_values`` (real traces
disagree on types: ROCm writes ``"stream": "0x0"``); what cannot be read is counted in the
trace's ``ignored`` (reason → count), never a reason to refuse the file.
"""

from __future__ import annotations

from decimal import InvalidOperation
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from analyzers.read.kineto_values import (
    MAX_US,
    as_int,
    decimal_us_to_ns,
    int_column,
    raw_int,
    us_to_ns,
    value_ns,
)
from tracekit.core.dtypes import element_bytes
from tracekit.core.errors import TracekitError
from tracekit.core.trace_model import NO_VALUE

ABSENT = msgspec.Raw()

# |ts| below 2**42 µs: a float parsed from a decimal with up to 3 fractional digits, times
# 1000 and rounded, gives back the exact integer nanoseconds (parse error + product error
# < 0.5 ns). Kineto's relative timestamps exceed this after ~50 days of process uptime.
_EXACT_FLOAT_US = float(2**42)


class Args(msgspec.Struct, gc=False):
    # ids of any JSON type (ROCm writes "stream": "0x0"), read by ``kineto_values.as_int``
    correlation: Any = NO_VALUE
    stream: Any = NO_VALUE
    device: Any = NO_VALUE
    external_id: Any = msgspec.field(default=NO_VALUE, name="External id")
    # record_shapes: kept as text, interned per distinct signature, decoded once each
    # (msgspec.Raw takes no union: an empty Raw means absent)
    dims: msgspec.Raw = msgspec.field(default=ABSENT, name="Input Dims")
    types: msgspec.Raw = msgspec.field(default=ABSENT, name="Input type")
    # collectives (record_param_comms ops, NCCL kernels): decoded only where present
    in_nelems: msgspec.Raw = msgspec.field(default=ABSENT, name="In msg nelems")
    out_nelems: msgspec.Raw = msgspec.field(default=ABSENT, name="Out msg nelems")
    dtype: msgspec.Raw = ABSENT
    group: msgspec.Raw = msgspec.field(default=ABSENT, name="Group size")


class Event(msgspec.Struct, gc=False):
    """Any JSON type is read (``kineto_values``): text for names, numbers for the rest."""

    ph: Any = ""
    name: Any = ""
    cat: Any = ""
    ts: Any = 0
    dur: Any = 0
    pid: Any = 0
    tid: Any = 0
    args: Args | list[Any] | str | int | float | bool | None = None


class _RawTsEvent(msgspec.Struct, gc=False):
    ph: Any = ""
    ts: msgspec.Raw = msgspec.Raw(b"0")


EVENTS = msgspec.json.Decoder(list[Event])
_RAW_TS = msgspec.json.Decoder(list[_RawTsEvent])
_NO_ARGS = Args()
_NUMBERS = {int, float}
_ARGS_OR_NONE = {Args, type(None)}
_TEXT = msgspec.json.Decoder(str)
_ARG_COLUMNS = {"correlation": "correlation", "stream": "stream", "device": "device"}
_ARG_COLUMNS |= {"external_id": "External id"}  # column → the key in the trace
_TS, _DUR, _ARGS = attrgetter("ts"), attrgetter("dur"), attrgetter("args")
BAD_SIZES = "collective message sizes not modelled ('In/Out msg nelems', 'dtype')"
BAD_GROUP = "collective group sizes not modelled ('Group size')"
BAD_TIME = "complete events whose 'ts' or 'dur' is not a number: left out"
_BAD_ARGS = "event 'args' that are not an object: left out"


def count(ignored: dict[str, int], reason: str, n: int = 1) -> None:
    if n:
        ignored[reason] = ignored.get(reason, 0) + n


def read_times(
    path: Path, chunk: bytes, complete: list[Event], ignored: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, list[Event]]:
    """(start ns, duration ns, events) of a chunk's complete events: numbers as they are,
    numeric strings read; events whose ts or dur is not a number left out (and counted)."""
    ts, dur = list(map(_TS, complete)), list(map(_DUR, complete))
    if set(map(type, ts)) <= _NUMBERS and set(map(type, dur)) <= _NUMBERS:
        return _start_ns(path, chunk, ts), us_to_ns(np.array(dur)), complete
    start_ns, dur_ns = [value_ns(v) for v in ts], [value_ns(v) for v in dur]
    keep = [s is not None and d is not None for s, d in zip(start_ns, dur_ns, strict=True)]
    count(ignored, BAD_TIME, keep.count(False))
    kept = [e for e, k in zip(complete, keep, strict=True) if k]
    starts = np.array([s for s, k in zip(start_ns, keep, strict=True) if k], dtype=np.int64)
    durs = np.array([d for d, k in zip(dur_ns, keep, strict=True) if k], dtype=np.int64)
    return starts, durs, kept


def _start_ns(path: Path, chunk: bytes, values: list[int | float]) -> np.ndarray:
    ts = np.array(values)
    if ts.dtype.kind != "f" or not len(ts) or np.abs(ts).max() < _EXACT_FLOAT_US:
        return us_to_ns(ts)
    # Large fractional floats: re-read the timestamps' decimal text for exact nanoseconds.
    texts = [bytes(r.ts) for r in _RAW_TS.decode(chunk) if r.ph == "X"]
    try:
        exact = [decimal_us_to_ns(t) for t in texts]
    except (InvalidOperation, ValueError) as exc:
        raise TracekitError(path, f"corrupt timestamp ({exc})") from None
    if max(abs(v) for v in exact) > MAX_US * 1000:
        raise ValueError("a timestamp is beyond ±4e15 µs")
    return np.array(exact, dtype=np.int64)


def read_args(
    complete: list[Event], ignored: dict[str, int]
) -> tuple[list[Args], dict[str, np.ndarray]]:
    """Each event's args (empty where they are not an object) and the id columns."""
    raw = list(map(_ARGS, complete))
    if set(map(type, raw)) <= _ARGS_OR_NONE:
        args = [a or _NO_ARGS for a in raw]
    else:
        args = [a if type(a) is Args else _NO_ARGS for a in raw]
        count(ignored, _BAD_ARGS, sum(1 for a in raw if a is not None and type(a) is not Args))
    columns: dict[str, np.ndarray] = {}
    for name, key in _ARG_COLUMNS.items():
        columns[name], bad = int_column(list(map(attrgetter(name), args)))
        count(ignored, f"'{key}' args not readable as integers: taken as unknown", bad)
    return args, columns


def msg_bytes(args: list[Args], ignored: dict[str, int]) -> np.ndarray:
    """Per event: max(in, out) message elements × dtype bytes, where Kineto recorded them
    (NCCL's size convention: the all-gathered output, the reduce-scattered input)."""
    out = np.full(len(args), NO_VALUE, dtype=np.int64)
    for i, a in enumerate(args):
        if a.in_nelems is ABSENT and a.out_nelems is ABSENT:
            continue
        counts = [raw_int(n) for n in (a.in_nelems, a.out_nelems) if len(n)]
        elements = None if None in counts else max(counts)  # type: ignore[type-var]
        try:
            size = element_bytes(_TEXT.decode(a.dtype)) if len(a.dtype) else None
        except msgspec.DecodeError:
            size = None
        if size is None or elements is None or not 0 <= elements * size < 2**62:
            count(ignored, BAD_SIZES)
            continue
        out[i] = elements * size
    return out


def group_sizes(args: list[Args], ignored: dict[str, int]) -> np.ndarray:
    """Per event: its communicator's size (Kineto's ``Group size``), where recorded."""
    out = np.full(len(args), NO_VALUE, dtype=np.int32)
    for i, a in enumerate(args):
        if a.group is ABSENT:
            continue
        size = raw_int(a.group) or 0
        if not 0 < size < 2**31:
            count(ignored, BAD_GROUP)
            continue
        out[i] = size
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _mapping(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _mappings(value: Any) -> list[dict[str, Any]] | None:
    return [p for p in value if isinstance(p, dict)] if isinstance(value, list) else None


#: the top-level keys kept, wherever they are in the document, and how each is read
TOP_LEVEL: dict[str, Any] = {
    "baseTimeNanoseconds": as_int,
    "schemaVersion": as_int,
    "vllm_version": _text,
    "distributedInfo": _mapping,
    "deviceProperties": _mappings,
}


def read_top_level(fields: dict[str, Any], ignored: dict[str, int]) -> dict[str, Any]:
    """The kept top-level keys, each as the type the stages read; a value of a type that
    cannot be read is left out and counted in ``ignored``."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        out[key] = TOP_LEVEL[key](value)
        if out[key] is None and value is not None:
            count(ignored, f"top-level '{key}' of a type not modelled: left out")
    return out
