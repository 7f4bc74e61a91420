"""Bytes per element of a dtype, whoever names it: one table.

Names come from Kineto's ``Input type`` (``c10::BFloat16``, ``float``, ``long int``), from
c10's ScalarType (``BFloat16``, ``Long``), and from model configs and manifests
(``bfloat16``, ``torch.float16``, ``fp8``). They are looked up lower-cased, without the
``c10::`` and ``torch.`` prefixes.
"""

from __future__ import annotations

from typing import Final

BYTES: Final[dict[str, int]] = {
    # floating point (Kineto's "float" is fp32, as in C)
    "double": 8, "float64": 8,
    "float": 4, "float32": 4,
    "half": 2, "float16": 2, "bfloat16": 2,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
    # integers and bool (ScalarType: Char = int8, Byte = uint8)
    "long int": 8, "long": 8, "int64": 8,
    "int": 4, "unsigned int": 4, "int32": 4,
    "short int": 2, "short": 2, "int16": 2,
    "signed char": 1, "unsigned char": 1, "char": 1, "byte": 1, "int8": 1, "uint8": 1,
    "bool": 1,
    # complex
    "complex<float>": 8, "complexfloat": 8,
    "complex<double>": 16, "complexdouble": 16,
}  # fmt: skip


def _key(name: object) -> str:
    return str(name or "").strip().lower().removeprefix("c10::").removeprefix("torch.")


def element_bytes(name: object) -> int | None:
    """Bytes per element of a tensor dtype name, or None when it names no tensor dtype."""
    return BYTES.get(_key(name))


def dtype_bytes(name: object, default: int = 2) -> int:
    """A model's or KV cache's dtype (``bfloat16``, ``fp8_e4m3``, ``int8``): bytes per value;
    ``default`` for a name no table knows (``auto`` included)."""
    key = _key(name)
    if "fp8" in key or "float8" in key or "int8" in key:
        return 1
    return BYTES.get(key, default)
