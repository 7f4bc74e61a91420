"""Kineto's values as tracekit keeps them: timestamps as exact int64 nanoseconds, and
``Input Dims`` / ``Input type`` texts as Signatures."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import numpy as np

from tracekit.model import Dims, Signature

# Bounds that keep every int64 sum (base + ts + dur) from overflowing: ~126 years in µs.
MAX_US = 4e15
_SIGNATURE = msgspec.json.Decoder(tuple[list[Any], list[Any]])


def signature(op: str, dims_text: bytes, types_text: bytes) -> Signature | None:
    """``Input Dims`` / ``Input type`` as a Signature: each input's dims a tuple of ints, or a
    tuple of such tuples for a tensor list; None where the text has another form."""
    try:
        dims, types = _SIGNATURE.decode(b"[" + dims_text + b"," + types_text + b"]")
    except msgspec.DecodeError:
        return None
    out: list[Dims] = []
    for d in dims:
        if not isinstance(d, list):
            return None
        if all(type(v) is int for v in d):
            out.append(tuple(d))
        elif all(isinstance(t, list) and all(type(v) is int for v in t) for t in d):
            out.append(tuple(tuple(t) for t in d))
        else:
            return None
    if not all(isinstance(t, str) for t in types):
        return None
    return Signature(op, tuple(out), tuple(types))


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
