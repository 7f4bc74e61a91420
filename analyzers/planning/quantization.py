"""A model's precisions: read from a Hugging Face config, or set by ``--dtype`` / ``--kv-dtype``.

From ``config.json`` (as the checkpoints write them):

* ``quantization_config.quant_method``: ``fp8`` / ``fbgemm_fp8`` (HF FP8, DeepSeek's block
  FP8, Meta's FBGEMM row-wise) → fp8; ``awq``, ``gptq``, ``awq_marlin``, ``gptq_marlin`` →
  int``bits`` (4 or 8); ``compressed-tensors`` → its first config group's weights (``float``
  8 bits: fp8, ``int``: int``num_bits``); ``modelopt`` ``quant_algo`` FP8 → fp8;
  ``bitsandbytes`` → int4 or int8; ``kv_cache_scheme`` (compressed-tensors) with 8 bits → an
  FP8 KV cache;
* otherwise ``torch_dtype`` (``dtype``): bfloat16 / float16; float32 serves as bf16 (vLLM's
  ``dtype=auto`` runs float32 checkpoints at 16 bits).

The KV cache follows the activations (vLLM ``kv_cache_dtype=auto``) unless the config says
otherwise. Activations are the ``torch_dtype``'s 16-bit type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tracekit.core.model_config import ModelSpec
from tracekit.core.precision import SIXTEEN_BIT, bytes_of


def activation_of(data: Mapping[str, Any]) -> str:
    name = str(data.get("torch_dtype") or data.get("dtype") or "bfloat16").lower()
    return "fp16" if name.removeprefix("torch.") in ("float16", "half") else "bf16"


def _int_bits(bits: object) -> str:
    return "int8" if bits == 8 else "int4"


def weights_of(data: Mapping[str, Any]) -> str:
    """The weights' precision (module docstring)."""
    quant = data.get("quantization_config")
    if not isinstance(quant, Mapping):
        return activation_of(data)
    method = str(quant.get("quant_method", "")).lower()
    if "fp8" in method or str(quant.get("quant_algo", "")).upper().startswith("FP8"):
        return "fp8"
    if method.startswith(("awq", "gptq")):
        return _int_bits(quant.get("bits", 4))
    if method == "bitsandbytes":
        return "int8" if quant.get("load_in_8bit") else "int4"
    if method == "compressed-tensors":
        groups = quant.get("config_groups")
        first: object = next(iter(groups.values()), {}) if isinstance(groups, Mapping) else {}
        w = first.get("weights") if isinstance(first, Mapping) else None
        if isinstance(w, Mapping):
            if w.get("type") == "float" and w.get("num_bits") == 8:
                return "fp8"
            if w.get("type") == "int":
                return _int_bits(w.get("num_bits"))
    return activation_of(data)


def kv_of(data: Mapping[str, Any]) -> str:
    quant = data.get("quantization_config")
    scheme = quant.get("kv_cache_scheme") if isinstance(quant, Mapping) else None
    if isinstance(scheme, Mapping) and scheme.get("num_bits") == 8:
        return "fp8"
    return activation_of(data)


def with_precision(spec: ModelSpec, weights: str | None = None, kv: str | None = None) -> ModelSpec:
    """``spec`` with its weights and/or KV cache at other precisions; a 16-bit one also sets
    the activations' type."""
    w, k = weights or spec.weights, kv or spec.kv
    act = w if w in SIXTEEN_BIT else spec.activation
    config = dataclasses.replace(spec.config, dtype_bytes=bytes_of(w))
    return dataclasses.replace(
        spec, config=config, kv_dtype_bytes=bytes_of(k), precision=w, kv_precision=k,
        activation=act,
    )  # fmt: skip
