"""Roofline stage: compute vs HBM per op call from recorded shapes, else per engine step from
the model config and the step's tokens.

**Per op call** (where the trace was recorded with ``record_shapes=True``): each call tree's
outermost op that ``analyzers.op_cost`` can cost (GEMMs, attention, elementwise) is set
against the ridge point by its own FLOPs / bytes, and its time — its span on a CPU rank, the
device work it launched on a GPU rank — goes to compute or hbm accordingly (``op_roofline``).
This takes precedence over the step model below, which decides the rest.

**Per step**: FLOPs and bytes come from the run manifest's model config and each step's
``execute_context_N(T)_generation_M(G)`` counts, for *this rank's shard* (TP divides heads,
FFN and vocab; PP gives the stage its layers as vLLM does; EP gives it E/ep whole experts).
Per step, with n = T + G new tokens:

* weights are read once per step: attention (q, k, v, o), the gated FFN (3 · hidden · I) or
  the experts the step's tokens touch (E_local · (1 − (1 − k/E)^n) of them, uniform routing),
  the router, and the LM head on the last stage;
* linear FLOPs = 2 · n · active parameters (k experts per token for MoE); LM head for the
  N + M sequences sampled;
* attention FLOPs: prefill 2 · heads · head_dim · T²/N per layer (causal, equal prompts);
  decode 4 · heads · head_dim · C per layer over the C context tokens the decodes read;
* KV bytes per token and layer = 2 · kv heads · head_dim · dtype bytes, written for the n new
  tokens and read over T + C; C from the capture's KV usage at that step (block-rounded),
  else from the prompt lengths seen;
* activations: the inputs and outputs of every matmul.

A step is compute-bound when FLOPs / bytes reaches the device's ridge point (peak FLOP/s /
peak bandwidth); its compute and HBM time (partition segments inside the step) all go to that
bucket. Unclassified ops and time outside modelled steps and costed ops keep the name prior.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from analyzers.attribute import (
    BUCKET_INDEX,
    Attribution,
    relabel,
    segment_interval,
    split,
)
from analyzers.classify import FAMILY_LEVEL, UNCLASSIFIED_INDEX
from analyzers.op_roofline import op_roofline, peak_errors
from analyzers.steps import StepRow
from analyzers.vllm_log import LogRecord
from tracekit.analysis import (
    NAME_PRIOR,
    ROOFLINE,
    SHAPES,
    KindRoofline,
    RankRoofline,
)
from tracekit.buckets import COMPUTE, HBM
from tracekit.hardware import DeviceSpec
from tracekit.model import DEVICE_KINDS, Events, Kind, RankId
from tracekit.rundir import StepRecord

I64 = npt.NDArray[np.int64]
_DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2}
_C, _H = BUCKET_INDEX[COMPUTE], BUCKET_INDEX[HBM]


def dtype_bytes(name: object, default: int = 2) -> int:
    text = str(name or "").lower().removeprefix("torch.")
    if "fp8" in text or "float8" in text or "int8" in text:
        return 1
    return _DTYPE_BYTES.get(text, default)


@dataclass(frozen=True)
class ModelConfig:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    dtype_bytes: int
    experts: int | None = None
    experts_per_token: int | None = None
    moe_intermediate: int | None = None  # per-expert FFN width; else ``intermediate``
    max_model_len: int | None = None
    attn_params: int | None = None  # per-layer attention weights when not GQA q/k/v/o (MLA)
    kv_latent: int | None = None  # MLA: cached elements per token and layer, on every TP rank
    shared_experts: int = 0  # always-active experts per MoE layer (width ``moe_intermediate``)
    dense_layers: int = 0  # leading layers with a dense FFN of ``intermediate`` (MoE models)

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


@dataclass(frozen=True)
class RunFacts:
    """What the run directory says that the cost model needs (None: not known)."""

    model: ModelConfig | None = None
    layout: Shard = Shard()
    dp: int = 1
    block_size: int | None = None
    num_blocks: int | None = None
    kv_dtype_bytes: int | None = None
    records: tuple[StepRecord, ...] = ()
    spec: DeviceSpec | None = None
    spec_note: str = ""

    @property
    def usable_blocks(self) -> int | None:
        return self.num_blocks - 1 if self.num_blocks else None  # vLLM's null block

    def shard(self, identity: RankId) -> Shard:
        lay = self.layout
        return Shard(lay.tp, lay.pp, lay.ep, identity.pp or 0)

    def kv_bytes_per_token(self, shard: Shard) -> int | None:
        """KV-cache bytes per token on one rank: 2 · layers · kv heads · head dim · dtype."""
        m = self.model
        return None if m is None else kv_bytes_per_token(m, shard, self.kv_dtype_bytes)


def kv_bytes_per_token(m: ModelConfig, shard: Shard, kv_dtype_bytes: int | None = None) -> int:
    """2 · layers · kv heads · head dim · dtype bytes; MLA: its latent, on every TP rank."""
    per, layers = kv_dtype_bytes or m.dtype_bytes, shard.layers(m.layers)
    if m.kv_latent:
        return layers * m.kv_latent * per
    return 2 * layers * max(1, m.kv_heads // shard.tp) * m.head_dim * per


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
    size = layers * ((attn_w + mlp_read) * m.dtype_bytes + n * act * m.dtype_bytes)
    size += kv_b * (n + t + context)
    if s.stage == s.pp - 1:
        rows = step.context_requests + step.generation_requests
        head = m.vocab * m.hidden / s.tp
        flops += 2 * rows * head
        size += head * m.dtype_bytes + rows * m.vocab / s.tp * 4
    return StepCost(flops, size)


def step_windows(events: Events, steps: Sequence[StepRow], device: str) -> tuple[I64, I64]:
    """Each step's interval: its annotation on CPU ranks; on GPU ranks the span of the device
    work launched inside it (by correlation id), clipped so steps never overlap."""
    starts = np.array([s.start_ns for s in steps], dtype=np.int64)
    ends = starts + np.array([s.dur_ns for s in steps], dtype=np.int64)
    if device == "gpu" and len(steps):
        runtime = np.flatnonzero((events.kind == Kind.RUNTIME) & (events.correlation >= 0))
        dev = np.flatnonzero(np.isin(events.kind, DEVICE_KINDS) & (events.correlation >= 0))
        step_of = np.searchsorted(starts, events.start_ns[runtime], side="right") - 1
        inside = (step_of >= 0) & (events.start_ns[runtime] < ends[np.clip(step_of, 0, None)])
        corr, owner = events.correlation[runtime[inside]], step_of[inside]
        order = np.argsort(corr, kind="stable")
        corr, owner = corr[order], owner[order]
        if len(corr) and len(dev):
            at = np.clip(np.searchsorted(corr, events.correlation[dev]), 0, len(corr) - 1)
            hit = corr[at] == events.correlation[dev]
            step, rows = owner[at[hit]], dev[hit]
            lo = np.full(len(steps), np.iinfo(np.int64).max, dtype=np.int64)
            hi = np.full(len(steps), np.iinfo(np.int64).min, dtype=np.int64)
            np.minimum.at(lo, step, events.start_ns[rows])
            np.maximum.at(hi, step, events.end_ns[rows])
            seen = hi > np.iinfo(np.int64).min
            starts, ends = np.where(seen, lo, starts), np.where(seen, hi, ends)
    if len(starts) > 1:
        starts[1:] = np.maximum(starts[1:], np.maximum.accumulate(ends)[:-1])
        ends = np.maximum(ends, starts)
    return starts, ends


class DecodeContext:
    """C, the context tokens a step's decodes read: from KV usage in steps/, else prompts
    (vLLM's logged stats are one sample per interval, too coarse for a step's context)."""

    def __init__(self, facts: RunFacts, engine: int, steps: Sequence[StepRow]) -> None:
        mine = [r for r in facts.records if r.engine == engine and not isinstance(r, LogRecord)]
        self.ts = [r.ts_ns for r in mine]
        self.records = mine
        self.capacity = (facts.usable_blocks or 0) * (facts.block_size or 0)
        prompts = [s.context_tokens / s.context_requests for s in steps if s.context_requests]
        self.prompt = float(np.mean(prompts)) if prompts else 0.0
        self.source = (
            "KV usage in steps/"
            if mine and self.capacity
            else "prompt lengths seen (no steps/ KV usage)"
            if prompts
            else "not counted (no steps/ KV usage, no prefill seen)"
        )

    def __call__(self, step: StepRow) -> float:
        if not step.generation_requests:
            return 0.0
        if self.records and self.capacity:
            at = bisect_right(self.ts, step.start_ns) - 1
            best = max(at, 0)
            for i in range(at, max(at - 4, -1), -1):  # the record of this very step
                r = self.records[i]
                if (r.prefill_tokens, r.decode_tokens) == (
                    step.context_tokens,
                    step.generation_tokens,
                ):
                    best = i
                    break
            r = self.records[best]
            cached = max(0.0, r.kv_usage * self.capacity - step.context_tokens)
            # the step's decodes read their own contexts: a share of the cache when other
            # running requests sit out this step (PP micro-batches, budget limits)
            return cached * min(1.0, step.generation_requests / max(r.running, 1))
        return step.generation_requests * self.prompt


def roofline(
    att: Attribution,
    events: Events,
    steps: Sequence[StepRow],
    facts: RunFacts,
    identity: RankId,
) -> tuple[Attribution, RankRoofline | None]:
    """Compute vs HBM: inside modelled steps by each step's intensity (model config), then
    per op call by its own intensity where the trace recorded shapes (which take precedence)."""
    spec = facts.spec
    if spec is None:
        return att, None
    result = None
    if facts.model is not None:
        att, result = _step_roofline(att, events, steps, facts, identity, facts.model, spec)
    att, ops = op_roofline(att, events, spec)
    if ops is None:
        return att, result
    kinds, decided, notes = ops
    if result is None or result.basis == NAME_PRIOR:
        base = result or RankRoofline(
            basis=SHAPES, device=spec.name, ridge=spec.ridge, kinds=[], decided_ns=0, notes=[]
        )
        result = msgspec.structs.replace(base, basis=SHAPES)
    notes = [*result.notes, *notes]
    return att, msgspec.structs.replace(result, ops=kinds, ops_decided_ns=decided, notes=notes)


def _step_roofline(
    att: Attribution,
    events: Events,
    steps: Sequence[StepRow],
    facts: RunFacts,
    identity: RankId,
    m: ModelConfig,
    spec: DeviceSpec,
) -> tuple[Attribution, RankRoofline | None]:
    """Split compute vs HBM time inside modelled steps by each step's arithmetic intensity."""
    shard = facts.shard(identity)
    kv_b = facts.kv_bytes_per_token(shard) or 0
    context = DecodeContext(facts, identity.dp or 0, steps)
    modelled = [i for i, s in enumerate(steps) if s.context_tokens + s.generation_tokens > 0]
    notes = [f"decode context: {context.source}"]
    if not modelled:
        notes.append("no step with tokens in the trace: the name prior stands")
        return att, _result(spec, [], [], [], notes, 0, NAME_PRIOR)
    chosen = [steps[i] for i in modelled]
    costs = [step_cost(m, shard, s, context(s), kv_b) for s in chosen]
    bound = np.array([c.flops >= spec.ridge * c.bytes for c in costs])
    starts, ends = step_windows(events, steps, att.device)
    starts, ends = starts[modelled], ends[modelled]
    att = split(att, np.concatenate([starts, ends]))
    seg = segment_interval(att, starts, ends)
    winner = att.partition.winner
    family_ok = winner != FAMILY_LEVEL[UNCLASSIFIED_INDEX]
    eligible = (seg >= 0) & np.isin(att.segment_bucket, (_C, _H)) & family_ok
    target = np.where(bound, _C, _H).astype(np.int8)
    labels = att.segment_bucket.copy()
    labels[eligible] = target[seg[eligible]]
    decided = int(np.diff(att.partition.bounds)[eligible].sum())
    op_bucket = _op_buckets(att, events, starts, ends, target)
    att = relabel(att, labels, op_bucket)
    durations = (ends - starts).tolist()
    return att, _result(spec, chosen, costs, durations, notes, decided, ROOFLINE)


def _op_buckets(
    att: Attribution, events: Events, starts: I64, ends: I64, target: npt.NDArray[np.int8]
) -> npt.NDArray[np.int8]:
    """Ops inside a modelled step list under that step's bucket (named work only)."""
    out = att.op_bucket.copy()
    at = np.searchsorted(starts, events.start_ns, side="right") - 1
    inside = (at >= 0) & (events.start_ns < ends[np.clip(at, 0, None)])
    named = np.isin(out, (_C, _H)) & (att.op_family != UNCLASSIFIED_INDEX)
    rows = inside & named
    out[rows] = target[at[rows]]
    return out


def _result(
    spec: DeviceSpec,
    steps: Sequence[StepRow],
    costs: Sequence[StepCost],
    durations: Sequence[int],
    notes: list[str],
    decided: int,
    basis: str,
) -> RankRoofline:
    kinds = []
    for kind in ("prefill", "decode", "mixed", "all"):
        rows = [i for i, s in enumerate(steps) if kind in ("all", s.kind)]
        if not rows or (kind == "all" and len({s.kind for s in steps}) == 1):
            continue
        kinds.append(_kind(kind, rows, costs, durations, spec))
    for k in kinds:
        if k.model_error:
            notes.append(f"{k.kind}: {k.model_error}")
    return RankRoofline(
        basis=basis,
        device=spec.name,
        ridge=spec.ridge,
        kinds=kinds,
        decided_ns=decided,
        notes=notes,
    )


def _kind(
    kind: str,
    rows: list[int],
    costs: Sequence[StepCost],
    durations: Sequence[int],
    spec: DeviceSpec,
) -> KindRoofline:
    flops = sum(costs[i].flops for i in rows)
    size = sum(costs[i].bytes for i in rows)
    time_ns = sum(durations[i] for i in rows)
    seconds = time_ns / 1e9
    f_pct = 100 * flops / seconds / spec.flops if seconds else None
    b_pct = 100 * size / seconds / spec.bandwidth if seconds else None
    errors = peak_errors(f_pct, b_pct)
    return KindRoofline(
        kind=kind,
        steps=len(rows),
        compute_steps=sum(1 for i in rows if costs[i].flops >= spec.ridge * costs[i].bytes),
        flops=flops,
        bytes=size,
        intensity=flops / size if size else 0.0,
        time_ns=time_ns,
        flops_pct=None if f_pct is None or f_pct > 100 else round(f_pct, 3),
        bandwidth_pct=None if b_pct is None or b_pct > 100 else round(b_pct, 3),
        model_error="; ".join(errors) or None,
    )
