"""Costs of the fused serving ops whose inputs alone don't give their work: MoE and paged
decode attention, as recorded in a graph-capture trace (``analyzers.read.graph_capture``).

Under CUDA/HIP graphs the replayed kernels carry no op; the capture trace has the ops, with
their input shapes, that launched them. Two op families hold most of a decode step's time
and are not costed by ``analyzers.planning.op_cost``, because their weights or KV cache are
state, not inputs:

* **MoE** (an op whose name contains ``moe``, inputs ``hidden[T, H]`` and
  ``router_logits[T, E]``): the expert weights are the ``[E, a, b]`` tensors the op's own
  call tree touches (views before each grouped GEMM), top-k is the integer the call tree's
  top-k op was given (``TopK``, ``aten::topk``). FLOPs = 2 · T·k · Σ per-expert weight
  elements; bytes = the experts the step's T tokens touch, E · (1 − (1 − k/E)^T) of them
  (uniform routing), times their weight bytes, plus the hidden states in and out. A stack
  stored as ``uint8`` with a dim of H/2 holds two 4-bit values per byte (MXFP4 / NVFP4), so
  its elements are twice its bytes. No top-k, no expert weights: no cost (nothing guessed).
* **Paged decode attention** (an op whose name contains ``attention``, first input
  ``q[T, Hq, D]``; the KV heads Hkv from the first other input shaped ``[..., Hkv, D]``
  with Hkv dividing Hq, its dtype the cache's): the context it reads is not in its shapes,
  so the cost has a per-key part, known once the step's context is: FLOPs =
  4 · Hq · D per (query, key) pair, bytes = 2 · Hkv · D · dtype per key read, plus q and
  the output. The step's pairs and keys come from vLLM's detailed step annotation
  (``sk`` / ``sqsk``, ``analyzers.rank.step_annotations``; vLLM counts a prefill's pairs as
  query length × sequence length, so a causal prefill's FLOPs are overcounted up to 2×, as
  for ``op_cost``'s attention). The same holds for such an op in a trace's own shapes
  (attention outside piecewise graphs, eager mode). Sliding-window layers read
  fewer keys than the step's context; their calls then show above the bandwidth peak, and
  the roofline says so as a model error.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from analyzers.planning.op_cost import ATTENTION, GEMM, OP_KINDS, op_cost, tensors
from tracekit.core.trace_model import Signature


class CapturedCall(NamedTuple):
    """One op call of a captured graph: its kind (index into OP_KINDS) and cost. The
    attention's cost grows with the step's context: ``per_pair`` FLOPs per (query, key)
    pair, ``per_key`` bytes per key read."""

    op: str
    kind: int
    flops: float
    bytes: float
    per_pair: float = 0.0
    per_key: float = 0.0

    def cost(self, pairs: float | None, keys: float | None) -> tuple[float, float] | None:
        """(FLOPs, bytes) at a step with ``pairs`` query-key pairs and ``keys`` keys read;
        None where the call needs them and they are unknown."""
        if not self.per_pair and not self.per_key:
            return self.flops, self.bytes
        if pairs is None or keys is None:
            return None
        return self.flops + self.per_pair * pairs, self.bytes + self.per_key * keys


class SubtreeOp(NamedTuple):
    """An op inside a call tree: its signature and its concrete (scalar) inputs' text."""

    sig: Signature
    concrete: tuple[str, ...]


def call_cost(sig: Signature, subtree: list[SubtreeOp]) -> CapturedCall | None:
    """The cost of one op call from its own inputs (``op_cost``) or, for MoE and paged
    attention, from its inputs and its call tree; None where not modelled."""
    plain = op_cost(sig)
    if plain is not None:
        if plain.bytes <= 0:
            return None
        return CapturedCall(sig.op, OP_KINDS.index(plain.kind), plain.flops, plain.bytes)
    name = sig.op.lower()
    if "moe" in name:
        return _moe(sig, subtree)
    if "attention" in name:
        return _decode_attention(sig)
    return None


def context_cost(sig: Signature) -> CapturedCall | None:
    """A paged decode attention op's cost parts (its cost needs the step's context); None
    for any other op, and for ops ``op_cost`` costs from their inputs alone."""
    if "attention" not in sig.op.lower() or op_cost(sig) is not None:
        return None
    return _decode_attention(sig)


def _moe(sig: Signature, subtree: list[SubtreeOp]) -> CapturedCall | None:
    t = tensors(sig)
    if len(t) < 2 or len(t[0].dims) != 2 or len(t[1].dims) != 2 or t[0].dims[0] != t[1].dims[0]:
        return None
    (tokens, hidden), experts = t[0].dims, t[1].dims[1]
    k = _top_k(subtree, experts)
    weights = {
        (x.dims, x.size)
        for op in subtree
        for x in tensors(op.sig)
        if len(x.dims) == 3 and x.dims[0] == experts and x.dims[1] * x.dims[2] > 1
    }
    if k is None or not weights:
        return None
    packed = any(size == 1 and hidden // 2 in dims[1:] for dims, size in weights)
    elements = sum(dims[1] * dims[2] * (2 if size == 1 and packed else 1) for dims, size in weights)
    stored = sum(math.prod(dims) * size for dims, size in weights)
    touched = 1.0 - (1.0 - k / experts) ** tokens
    flops = 2.0 * tokens * k * elements
    size = stored * touched + 2.0 * t[0].nbytes
    return CapturedCall(sig.op, OP_KINDS.index(GEMM), flops, size)


def _top_k(subtree: list[SubtreeOp], experts: int) -> int | None:
    """The k a top-k op in the call tree was given (its first integer scalar input)."""
    for op in subtree:
        if "topk" not in op.sig.op.lower().replace("_", ""):
            continue
        for text in op.concrete:
            if text.isdigit() and 0 < int(text) <= experts:
                return int(text)
    return None


def _decode_attention(sig: Signature) -> CapturedCall | None:
    t = tensors(sig)
    if not t or len(t[0].dims) != 3:
        return None
    tokens, heads, dim = t[0].dims
    kv_like = [
        x
        for x in t[1:]
        if len(x.dims) >= 3 and x.dims[-1] == dim and x.dims[-2] > 0 and heads % x.dims[-2] == 0
    ]
    # a KV tensor shaped unlike q (GQA, or a cache); else q-shaped new keys (MHA)
    kv = next((x for x in kv_like if x.dims != t[0].dims), kv_like[0] if kv_like else None)
    if kv is None or tokens <= 0:
        return None
    kv_heads = kv.dims[-2]
    q_bytes = 2.0 * t[0].nbytes  # q read, the output written
    return CapturedCall(
        sig.op,
        OP_KINDS.index(ATTENTION),
        0.0,
        q_bytes,
        per_pair=4.0 * heads * dim,
        per_key=2.0 * kv_heads * dim * kv.size,
    )
