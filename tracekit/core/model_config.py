"""A model as the cost model sees it: its config (``ModelConfig``), and a named one to plan
with (``ModelSpec``). Read from a capture's manifest, a preset or a Hugging Face config.json."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tracekit.core.dtypes import dtype_bytes
from tracekit.core.precision import of_bytes


@dataclass(frozen=True)
class ModelConfig:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    dtype_bytes: float  # weights' bytes per parameter (int4: 0.5)
    experts: int | None = None
    experts_per_token: int | None = None
    moe_intermediate: int | None = None  # per-expert FFN width; else ``intermediate``
    max_model_len: int | None = None
    attn_params: int | None = None  # per-layer attention weights when not GQA q/k/v/o (MLA)
    kv_latent: int | None = None  # MLA: cached elements per token and layer, on every TP rank
    shared_experts: int = 0  # always-active experts per MoE layer (width ``moe_intermediate``)
    dense_layers: int = 0  # leading layers with a dense FFN of ``intermediate`` (MoE models)

    @property
    def embed_bytes(self) -> float:
        """The embedding's and LM head's bytes per parameter: quantised checkpoints (FP8,
        INT8, AWQ / GPTQ) quantise the linear layers and keep these at 16 bits."""
        return max(self.dtype_bytes, 2)

    @property
    def act_bytes(self) -> float:
        """Activations' bytes per value: W8A8 runs them at 8 bits, weight-only int4 at 16."""
        return self.dtype_bytes if self.dtype_bytes >= 1 else 2

    @classmethod
    def from_manifest(cls, model: Mapping[str, Any] | None) -> ModelConfig | None:
        """The manifest's ``model`` section, or None when a needed figure is missing."""
        if not model:
            return None
        need = ("layers", "hidden_size", "heads", "head_dim", "intermediate_size", "vocab_size")
        if any(not isinstance(model.get(k), int) or model[k] <= 0 for k in need):
            return None
        experts = model.get("experts")
        return cls(
            layers=model["layers"],
            hidden=model["hidden_size"],
            heads=model["heads"],
            kv_heads=int(model.get("kv_heads") or model["heads"]),
            head_dim=model["head_dim"],
            intermediate=model["intermediate_size"],
            vocab=model["vocab_size"],
            dtype_bytes=dtype_bytes(model.get("dtype")),
            experts=int(experts) if experts else None,
            experts_per_token=int(model.get("experts_per_token") or 0) or None,
            moe_intermediate=model.get("moe_intermediate_size"),
            max_model_len=model.get("max_model_len"),
        )


@dataclass(frozen=True)
class ModelSpec:
    """A model to plan with: its name, its config, the KV cache's bytes per value, where the
    config came from, and the precisions by name (``tracekit.core.precision``; empty: the
    one the bytes stand for). ``activation``: the 16-bit type activations and an int4
    model's GEMMs run at (the config's ``torch_dtype``)."""

    name: str
    config: ModelConfig
    kv_dtype_bytes: float = 2
    source: str = ""
    precision: str = ""
    kv_precision: str = ""
    activation: str = "bf16"

    @property
    def weights(self) -> str:
        return self.precision or of_bytes(self.config.dtype_bytes, self.activation)

    @property
    def kv(self) -> str:
        return self.kv_precision or of_bytes(self.kv_dtype_bytes, self.activation)
