"""The per-step cost model: a model config, its shard on one rank, and a step's FLOPs and
bytes (shared by the roofline stage and ``tracekit plan``).

Per step, with n new tokens (prefill T + decode G) on a rank's shard (TP divides heads,
FFN and vocab; PP gives a stage its layers as vLLM does; EP gives it E/ep whole experts):
weights are read once per step (attention, the gated FFN or the experts the step's tokens
touch, the router, the LM head on the last stage: 16-bit in a quantised model); linear
FLOPs are 2 · n · active parameters; attention FLOPs and KV bytes follow the context the
step reads (``step_cost``); KV bytes per token are 2 · layers · kv heads · head dim · dtype
(``kv_bytes_per_token``; MLA: its latent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analyzers.rank.step_annotations import StepRow
from tracekit.core.model_config import ModelConfig


@dataclass(frozen=True)
class Shard:
    tp: int = 1
    pp: int = 1
    ep: int = 1
    stage: int = 0

    def layers(self, total: int) -> int:
        """Layers on this PP stage, split as vLLM's ``get_pp_indices`` does."""
        parts = [total // self.pp] * self.pp
        for i in range(2, total % self.pp + 2):
            parts[-i] += 1
        return parts[min(self.stage, self.pp - 1)]


def kv_bytes_per_token(m: ModelConfig, shard: Shard, kv_dtype_bytes: float | None = None) -> int:
    """2 · layers · kv heads · head dim · dtype bytes; MLA: its latent, on every TP rank."""
    per, layers = kv_dtype_bytes or m.dtype_bytes, shard.layers(m.layers)
    if m.kv_latent:
        return math.ceil(layers * m.kv_latent * per)
    return math.ceil(2 * layers * max(1, m.kv_heads // shard.tp) * m.head_dim * per)


def attention_weights(m: ModelConfig, s: Shard) -> float:
    """Attention parameters of one layer on one rank (q, k, v, o; or ``attn_params`` / TP)."""
    if m.attn_params:
        return m.attn_params / s.tp
    heads_r, kv_r = m.heads / s.tp, max(1, m.kv_heads // s.tp)
    return (m.hidden * (heads_r + 2 * kv_r) + heads_r * m.hidden) * m.head_dim


def expert_weights(m: ModelConfig, s: Shard) -> tuple[float, float, float]:
    """MoE layer on one rank: (local experts, one expert's weights, always-read weights)."""
    full = float(m.moe_intermediate or m.intermediate)
    e = float(m.experts or 0)
    local, width = (e / s.ep, full) if s.ep > 1 else (e, full / s.tp)
    always = m.hidden * (m.experts or 0) + m.shared_experts * 3 * m.hidden * full / s.tp
    return local, 3 * m.hidden * width, always


@dataclass(frozen=True)
class StepCost:
    flops: float
    bytes: float


def step_cost(
    m: ModelConfig, s: Shard, step: StepRow, context: float, kv_b: int, routed: int | None = None
) -> StepCost:
    """FLOPs and bytes of one step on one rank (module docstring); ``context`` = C. ``routed``:
    tokens the EP group routes (default the step's own; with DP attention, all DP ranks')."""
    n, t = step.context_tokens + step.generation_tokens, step.context_tokens
    heads_r = m.heads / s.tp
    kv_r = max(1, m.kv_heads // s.tp)
    attn_w = attention_weights(m, s)
    act = m.hidden * 4 + (2 * heads_r + 2 * kv_r) * m.head_dim
    dense = 3 * m.hidden * m.intermediate / s.tp
    if m.experts and m.experts_per_token:
        k, routed = m.experts_per_token, n if routed is None else routed
        local, expert, always = expert_weights(m, s)
        share = m.dense_layers / m.layers
        active = (k * expert / max(s.ep, 1) * routed / n if n else 0.0) + always
        touched = local * (1 - (1 - k / m.experts) ** routed) if routed else 0.0
        mlp_read = touched * expert + always
        active = share * dense + (1 - share) * active
        mlp_read = share * dense + (1 - share) * mlp_read
        act += k * expert / m.hidden
    else:
        active = mlp_read = dense
        act += 3 * m.intermediate / s.tp
    layers = s.layers(m.layers)
    attn_flops = 4 * heads_r * m.head_dim * context
    if step.context_requests:
        attn_flops += 2 * heads_r * m.head_dim * t * t / step.context_requests
    flops = layers * (2 * n * (attn_w + active) + attn_flops)
    size = layers * ((attn_w + mlp_read) * m.dtype_bytes + n * act * m.act_bytes)
    size += kv_b * (n + t + context)
    if s.stage == s.pp - 1:
        rows = step.context_requests + step.generation_requests
        head = m.vocab * m.hidden / s.tp
        flops += 2 * rows * head
        size += head * m.embed_bytes + rows * m.vocab / s.tp * 4
    return StepCost(flops, size)
