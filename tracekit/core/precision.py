"""Precisions the planner knows: what a weight or KV value costs in bytes, and what precision
the GEMMs run at.

| precision | bytes per value | GEMMs run at |
|---|---|---|
| bf16 | 2 | bf16 |
| fp16 | 2 | fp16 |
| fp8  | 1 | fp8 (W8A8: weights and activations FP8), where the GPU has FP8 tensor cores |
| int8 | 1 | int8 (W8A8, SmoothQuant-style), where the GPU has INT8 tensor cores |
| int4 | ½ | the activations' bf16 / fp16 (weight-only: AWQ, GPTQ dequantise in the GEMM) |

A GPU without the precision's tensor cores (FP8 on an A100) runs the GEMM weight-only, at its
16-bit rate (vLLM's Marlin kernels): ``compute_precision`` says which. Group scales of int4
(AWQ / GPTQ, one fp16 scale per 128 weights) add ~3% and are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from tracekit.core.errors import TracekitError

PRECISIONS: Final[dict[str, float]] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0,
                                       "int4": 0.5}  # fmt: skip
SIXTEEN_BIT: Final = ("bf16", "fp16")


def bytes_of(precision: str) -> float:
    return PRECISIONS[precision]


def parse(text: str, what: str) -> str:
    """``--dtype`` / ``--kv-dtype``: a name of ``PRECISIONS`` (``bfloat16``, ``float16`` too)."""
    key = text.strip().lower().removeprefix("torch.")
    key = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16"}.get(key, key)
    if key not in PRECISIONS:
        raise TracekitError(None, f"bad {what} {text!r}: use one of {', '.join(PRECISIONS)}")
    return key


def of_bytes(size: float, activation: str = "bf16") -> str:
    """The precision a byte count stands for where no name was given (1 B: fp8)."""
    return {2.0: activation, 1.0: "fp8", 0.5: "int4"}.get(float(size), "bf16")


def compute_precision(weights: str, activation: str, peaks: Mapping[str, float]) -> str:
    """The precision a GEMM with these weights runs at on a GPU with ``peaks`` (FLOP/s by
    precision): fp8 / int8 where the GPU has them, else the 16-bit activation precision."""
    if weights in ("fp8", "int8") and weights in peaks:
        return weights
    if weights in SIXTEEN_BIT:
        return weights if weights in peaks else "bf16"
    return activation if activation in peaks else "bf16"
