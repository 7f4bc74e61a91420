"""Kineto's values as tracekit keeps them: timestamps as exact int64 nanoseconds, ids and
counts as int64, and ``Input Dims`` / ``Input type`` texts as Signatures.

Real traces are the specification, and they do not agree on types: ROCm's Kineto writes
``"stream": "0x0"``, other tools write ids as floats or decimal strings. A value of another
type is read, never refused: a number in any form (int, float without a fraction, decimal or
``0x`` string) becomes that number; anything else is unknown (``None`` / ``NO_VALUE``), and
the caller counts it among the trace's ignored values.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
import numpy as np

from tracekit.core.trace_model import NO_VALUE, Dims, Signature

# Bounds that keep every int64 sum (base + ts + dur) from overflowing: ~126 years in µs.
MAX_US = 4e15
_INT64 = 2**63
#: elements of a tensor beyond any real one (a petabyte), so that sums of bytes fit int64
MAX_NUMEL = 2**50
_SIGNATURE = msgspec.json.Decoder(tuple[list[Any], list[Any]])
_ANY = msgspec.json.Decoder()
_RANGE = "a timestamp or duration is beyond ±4e15 µs"


def as_int(value: Any) -> int | None:
    """``value`` (a decoded JSON value) as an int64: an int; a float without a fraction; a
    decimal, ``0x`` hex or float-looking string of one. None for anything else (other text,
    a fraction, null, a bool, a list, an object) and beyond int64."""
    kind = type(value)
    if kind is int:
        out = value
    elif kind is float:
        if not math.isfinite(value) or not value.is_integer():
            return None
        out = int(value)
    elif kind is str:
        parsed = _parse_int(value)
        if parsed is None:
            return None
        out = parsed
    else:
        return None
    return out if -_INT64 <= out < _INT64 else None


def _parse_int(text: str) -> int | None:
    s = text.strip()
    hexadecimal = s[:2].lower() == "0x" or s[:3].lower() == "-0x"
    try:
        return int(s, 16) if hexadecimal else int(s)
    except ValueError:
        pass
    try:
        number = float(s)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


def raw_int(raw: msgspec.Raw | bytes) -> int | None:
    """A raw JSON value (``msgspec.Raw``) read as by ``as_int``."""
    try:
        return as_int(_ANY.decode(raw))
    except msgspec.DecodeError:
        return None


def int_column(values: list[Any]) -> tuple[np.ndarray, int]:
    """``values`` as an int64 column (``NO_VALUE`` where unknown) and how many were present
    but not readable as an integer (null is absent, not unreadable)."""
    if set(map(type, values)) <= {int}:
        try:
            return np.fromiter(values, np.int64, len(values)), 0
        except OverflowError:
            pass
    ints = [as_int(v) for v in values]
    bad = sum(1 for v, n in zip(values, ints, strict=True) if n is None and v is not None)
    column = np.array([NO_VALUE if n is None else n for n in ints], dtype=np.int64)
    return column, bad


def as_text(value: Any) -> str:
    """A name or category as text: a string as it is, null as empty, anything else as JSON."""
    if type(value) is str:
        return value
    return "" if value is None else msgspec.json.encode(value).decode()


def text_column(values: list[Any]) -> list[Any]:
    """``values`` with every non-string turned into text (``as_text``); fast when all are."""
    if set(map(type, values)) <= {str}:
        return values
    return [as_text(v) for v in values]


def value_ns(value: Any) -> int | None:
    """A timestamp or duration in µs, of any JSON type, as exact ns: numbers, and numeric
    strings from their decimal text; None for anything else. ValueError beyond ±4e15 µs."""
    kind = type(value)
    ns: int
    if kind is int:
        ns = value * 1000
    elif kind is float:
        if not math.isfinite(value):
            return None
        small = abs(value) < 2**42
        ns = round(value * 1000) if small else decimal_us_to_ns(repr(value).encode())
    elif kind is str:
        try:
            number = Decimal(value.strip())
        except (InvalidOperation, ValueError):
            return None
        if not number.is_finite():
            return None
        if abs(number) > MAX_US:
            raise ValueError(_RANGE)
        return int((number * 1000).to_integral_value())
    else:
        return None
    if abs(ns) > MAX_US * 1000:
        raise ValueError(_RANGE)
    return ns


def _dims(values: Any) -> Dims | None:
    """One input's dims: a tuple of ints, or a tuple of such tuples (a tensor list); None
    where they are not a tensor's shape (negative, or more elements than ``MAX_NUMEL``)."""
    if not isinstance(values, list):
        return None
    if values and all(isinstance(t, list) for t in values):
        inner = [t for t in map(_shape, values) if t is not None]
        return tuple(inner) if len(inner) == len(values) else None
    return _shape(values)


def _shape(values: list[Any]) -> tuple[int, ...] | None:
    if all(type(v) is int for v in values):
        out = tuple(values)
    else:
        ints = [as_int(v) for v in values]
        if any(v is None for v in ints):
            return None
        out = tuple(ints)
    if any(v < 0 for v in out) or math.prod(out) > MAX_NUMEL:
        return None
    return out


def signature(op: str, dims_text: bytes, types_text: bytes) -> Signature | None:
    """``Input Dims`` / ``Input type`` as a Signature: each input's dims a tuple of ints, or a
    tuple of such tuples for a tensor list; None where the text has another form."""
    try:
        dims, types = _SIGNATURE.decode(b"[" + dims_text + b"," + types_text + b"]")
    except msgspec.DecodeError:
        return None
    out = [_dims(d) for d in dims]
    if any(d is None for d in out) or not all(isinstance(t, str) for t in types):
        return None
    return Signature(op, tuple(out), tuple(types))  # type: ignore[arg-type]


def us_to_ns(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in "iuf" or (len(arr) and np.abs(arr).max() > MAX_US):
        raise ValueError("a timestamp or duration is beyond ±4e15 µs")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64) * 1000
    return np.rint(arr.astype(np.float64) * 1000.0).astype(np.int64)


def decimal_us_to_ns(text: bytes) -> int:
    whole, dot, frac = text.partition(b".")
    if dot and len(frac) <= 3 and frac.isdigit() and b"e" not in whole.lower():
        sign = -1 if whole.startswith(b"-") else 1
        return int(whole) * 1000 + sign * int(frac.ljust(3, b"0"))
    return int((Decimal(text.decode()) * 1000).to_integral_value())
