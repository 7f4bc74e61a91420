"""Models and workloads for ``tracekit plan``: built-in presets and HF ``config.json`` files.

Model figures are copied from each model's ``config.json`` on the Hugging Face Hub (the URL
is in each entry's comment). KV cache: BF16 unless stated (vLLM's ``kv_cache_dtype=auto``
follows the activation dtype, BF16 also for FP8 checkpoints).

Workloads (``--workload``): requests of IN prompt tokens and OUT generated tokens, CONCURRENCY
in flight across the deployment (default: as many as each replica's KV cache holds, up to
vLLM's ``max_num_seqs``):

* ``reasoning`` = 1024 in / 16384 out (a short question, a long chain of thought);
* ``chat`` = 1024 in / 512 out;
* ``IN:OUT[:CONCURRENCY]``, e.g. ``2048:256:64``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from analyzers.planning import hf_cache, quantization
from tracekit.core.errors import TracekitError
from tracekit.core.model_config import ModelConfig, ModelSpec
from tracekit.core.plan_result import Workload
from tracekit.core.precision import bytes_of

WORKLOADS: Final = {
    "reasoning": Workload("reasoning", 1024, 16384),
    "chat": Workload("chat", 1024, 512),
}


def _dense(layers: int, hidden: int, heads: int, kv: int, inter: int, vocab: int) -> ModelConfig:
    return ModelConfig(layers, hidden, heads, kv, hidden // heads, inter, vocab, 2)


def _mla_attention(hidden: int, heads: int, q_lora: int, kv_lora: int, nope: int, rope: int,
                   v: int) -> int:  # fmt: skip
    """MLA weights per layer: q down/up, kv down (latent + rope key), kv up, output."""
    q = (
        hidden * q_lora + q_lora * heads * (nope + rope)
        if q_lora
        else hidden * heads * (nope + rope)
    )
    return q + hidden * (kv_lora + rope) + kv_lora * heads * (nope + v) + heads * v * hidden


_LLAMA_405B = _dense(126, 16384, 128, 8, 53248, 128256)
PRESETS: Final[dict[str, ModelSpec]] = {
    # https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json
    "Llama-3.1-8B": ModelSpec("Llama-3.1-8B", _dense(32, 4096, 32, 8, 14336, 128256)),
    # https://huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json
    "Llama-3.1-70B": ModelSpec("Llama-3.1-70B", _dense(80, 8192, 64, 8, 28672, 128256)),
    # https://huggingface.co/meta-llama/Llama-3.1-405B/blob/main/config.json (BF16: 810 GB)
    "Llama-3.1-405B": ModelSpec("Llama-3.1-405B", _LLAMA_405B),
    # https://huggingface.co/meta-llama/Llama-3.1-405B-Instruct-FP8: FP8 (FBGEMM row-wise)
    # linear weights, same shapes; BF16 KV cache. The one that fits 8×80 GB.
    "Llama-3.1-405B-FP8": ModelSpec(
        "Llama-3.1-405B-FP8",
        replace(_LLAMA_405B, dtype_bytes=1),
        source="FP8 weights",
        precision="fp8",
    ),
    # https://huggingface.co/Qwen/Qwen2.5-32B/blob/main/config.json
    "Qwen2.5-32B": ModelSpec("Qwen2.5-32B", _dense(64, 5120, 40, 8, 27648, 152064)),
    # https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json: 8 experts, top-2
    "Mixtral-8x7B": ModelSpec(
        "Mixtral-8x7B",
        replace(_dense(32, 4096, 32, 8, 14336, 32000), experts=8, experts_per_token=2),
    ),
    # https://huggingface.co/deepseek-ai/DeepSeek-R1/blob/main/config.json: 61 layers (the
    # first 3 dense, FFN 18432), hidden 7168, 128 heads, MLA (q_lora_rank 1536, kv_lora_rank
    # 512, qk_nope 128, qk_rope 64, v 128), 256 routed experts (width 2048, top-8) + 1 shared,
    # vocab 129280; FP8 (e4m3, 128×128 blocks) weights. The KV cache holds the 512 + 64
    # latent per layer, on every TP rank. head_dim 192 (q·k) sizes the attention FLOPs.
    "DeepSeek-R1": ModelSpec(
        "DeepSeek-R1",
        ModelConfig(
            layers=61,
            hidden=7168,
            heads=128,
            kv_heads=128,
            head_dim=192,
            intermediate=18432,
            vocab=129280,
            dtype_bytes=1,
            experts=256,
            experts_per_token=8,
            moe_intermediate=2048,
            attn_params=_mla_attention(7168, 128, 1536, 512, 128, 64, 128),
            kv_latent=576,
            shared_experts=1,
            dense_layers=3,
        ),
        source="FP8 weights, MLA",
        precision="fp8",
    ),
}


def workload(text: str) -> Workload:
    """``reasoning``, ``chat`` or ``IN:OUT[:CONCURRENCY]``."""
    if text in WORKLOADS:
        return WORKLOADS[text]
    parts = text.split(":")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (2, 3) or any(n <= 0 for n in numbers):
        raise TracekitError(
            None, f"bad workload {text!r}: use reasoning, chat or IN:OUT[:CONCURRENCY] (> 0)"
        )
    return Workload(text, numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else None)


def model(text: str) -> ModelSpec:
    """A preset name (case-insensitive), the path of a HF ``config.json`` (or its folder),
    or a HF model id in the local cache (``hf_cache``); precisions from the config
    (``quantization``)."""
    for preset, spec in PRESETS.items():
        if preset.lower() == text.lower():
            return spec
    path = Path(text)
    name: str | None = None
    if hf_cache.looks_like_id(text):
        path, name = hf_cache.config_path(text), text
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise TracekitError(
            None,
            f"no model preset, config file or Hugging Face id {text!r}; presets: "
            f"{', '.join(PRESETS)}",
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TracekitError(path, f"unreadable config.json ({exc})") from None
    if not isinstance(data, dict):
        raise TracekitError(path, "config.json is not a JSON object")
    spec = ModelSpec(
        name or str(data.get("_name_or_path") or path.parent.name),
        from_hf(data, path),
        source=str(path),
        activation=quantization.activation_of(data),
    )
    return quantization.with_precision(
        spec, quantization.weights_of(data), quantization.kv_of(data)
    )


def _int(data: Mapping[str, Any], path: Path, *keys: str, default: int | None = None) -> int:
    for key in keys:
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    if default is not None:
        return default
    raise TracekitError(path, f"config.json lacks a positive integer {' / '.join(keys)}")


def from_hf(data: Mapping[str, Any], path: Path) -> ModelConfig:
    """The cost model's figures from a HF config (Llama, Qwen, Mixtral, DeepSeek-V3 keys)."""
    if isinstance(data.get("text_config"), dict):
        data = {**data, **data["text_config"]}
    hidden = _int(data, path, "hidden_size")
    heads = _int(data, path, "num_attention_heads")
    experts = _int(data, path, "num_local_experts", "n_routed_experts", "num_experts", default=0)
    kv_lora = _int(data, path, "kv_lora_rank", default=0)
    nope = _int(data, path, "qk_nope_head_dim", default=0)
    rope = _int(data, path, "qk_rope_head_dim", default=0)
    mla = kv_lora and nope and rope
    head_dim = nope + rope if mla else _int(data, path, "head_dim", default=hidden // heads)
    attn = None
    if mla:
        v = _int(data, path, "v_head_dim", default=nope)
        q_lora = _int(data, path, "q_lora_rank", default=0)
        attn = _mla_attention(hidden, heads, q_lora, kv_lora, nope, rope, v)
    return ModelConfig(
        layers=_int(data, path, "num_hidden_layers"),
        hidden=hidden,
        heads=heads,
        kv_heads=_int(data, path, "num_key_value_heads", default=heads),
        head_dim=head_dim,
        intermediate=_int(data, path, "intermediate_size"),
        vocab=_int(data, path, "vocab_size"),
        dtype_bytes=bytes_of(quantization.weights_of(data)),
        experts=experts or None,
        experts_per_token=_int(data, path, "num_experts_per_tok", default=2) if experts else None,
        moe_intermediate=_int(data, path, "moe_intermediate_size", default=0) or None,
        attn_params=attn,
        kv_latent=kv_lora + rope if mla else None,
        shared_experts=_int(data, path, "n_shared_experts", default=0) if experts else 0,
        dense_layers=_int(data, path, "first_k_dense_replace", default=0) if experts else 0,
    )
