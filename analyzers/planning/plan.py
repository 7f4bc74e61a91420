"""``tracekit plan``: predict every layout of N GPUs with the roofline stage's cost model.

Per layout DP × TP × PP (and, for MoE, EP over the DP × TP ranks of a stage, as vLLM's
``--enable-expert-parallel`` does: attention stays TP within each DP rank):

* **memory per device**: weights (``weight_bytes``, the fullest PP stage), an
  activation estimate (``max_num_batched_tokens`` × the widest matmul row, plus a fixed
  runtime overhead), and the rest of ``gpu_memory_utilization`` × HBM as KV cache;
  ``roofline.kv_bytes_per_token`` turns it into the **maximum concurrent sequences** at the
  workload's mean context (prompt + output / 2). A replica that holds fewer than the
  workload asks for (or than ``max_num_seqs``) is capacity-bound: the capacity trap.
* **decode round** (every running sequence makes one token): per PP stage, a micro-batch of
  B / PP sequences costs ``roofline.step_cost`` FLOPs and bytes, timed by the roofline
  max(FLOPs / (peak · efficiency), bytes / (bandwidth · efficiency)), plus the rank's host
  overhead per step (the engine core's scheduling overhead comes on top, once per round at
  PP = 1, overlapped by the batch queue at PP > 1: ``Costs``); prefill of the requests
  that finish in the round is amortised into it the same way. TP all-reduces (two per
  layer; one with EP) cost latency + 2 (TP − 1) / TP · message / link; EP dispatch +
  combine cost their latency + message / link; PP stages hand activations on (latency +
  message / link), and the round lasts PP × the slowest stage (+ scheduling): the rest is
  bubble.
* **throughput per device** = B / round / (TP × PP); layouts rank by it. **TPOT** is the
  round; **TTFT** the prompt's prefill through every PP stage plus one round (the step that
  carries it also carries the running batch). The **regime** agrees with the shares: the
  bucket with the largest share of the round, except capacity-bound where the KV cache holds
  less than ``1 − CAPACITY.threshold`` of the batch asked for (the capacity trap).
* **precision**: weights, KV cache and activations at ``ModelSpec``'s precisions; GEMMs at
  the GPU's dense peak for ``precision.compute_precision`` (FP8 tensor cores on Hopper; int4
  weight-only at the 16-bit rate); the embedding and LM head stay 16-bit.
* **nodes**: with ``gpus_per_node``, TP stays within a node unless ``tp_across_nodes``; a TP
  group, PP hand-off or EP group that spans nodes uses the inter-node link.

Latencies, efficiencies and the host overhead per step are in ``Costs`` (what
``analyzers.planning.calibration`` fits to captured runs; a rank of a TP × PP > 1 replica runs at
``model_parallel_efficiency`` of a single device's kernel efficiency); peaks come from
``tracekit.core.hardware``. Where the engine fixes the KV cache (vLLM CPU), ``kv_cache_bytes``
replaces the memory model's remainder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import msgspec

from analyzers.planning.step_cost import (
    Shard,
    StepCost,
    attention_weights,
    expert_weights,
    kv_bytes_per_token,
    step_cost,
)
from analyzers.rank.step_annotations import StepRow
from tracekit.core import buckets as b
from tracekit.core.hardware import GB, DeviceSpec
from tracekit.core.layout import Layout
from tracekit.core.model_config import ModelConfig, ModelSpec
from tracekit.core.plan_gpu import PlanGpu, builtin
from tracekit.core.plan_result import Costs, LayoutPlan, Plan, Workload
from tracekit.core.precision import compute_precision
from tracekit.core.regime_table import CAPACITY, REGIME_RULES

#: the model's constants before calibration (roofline peaks, sourced latencies)
DEFAULT_COSTS: Final = Costs()
BUCKETS: Final = (b.COMPUTE, b.HBM, b.COLLECTIVE, b.MOE_ROUTING, b.BUBBLE, b.HOST)


@dataclass(frozen=True)
class Nodes:
    """GPUs per node (one NVLink / Infinity Fabric domain) and whether TP may span nodes."""

    gpus_per_node: int
    tp_across: bool = False


@dataclass(frozen=True)
class Links:
    """Bandwidth (bytes/s, at the link efficiency) and latency of each kind of transfer."""

    tp: float
    tp_latency: float
    pp: float
    pp_latency: float
    ep: float


def layouts(gpus: int, moe: bool) -> list[Layout]:
    out = []
    for tp in range(1, gpus + 1):
        for pp in range(1, gpus // tp + 1):
            if gpus % (tp * pp) == 0:
                dp = gpus // (tp * pp)
                out.append(Layout(dp, tp, pp))
                if moe and dp * tp > 1:
                    out.append(Layout.of(dp, tp, pp, experts=True))
    return out


def setup(
    spec: ModelSpec,
    gpu: DeviceSpec | PlanGpu,
    c: Costs = DEFAULT_COSTS,
    gpus_per_node: int | None = None,
    tp_across_nodes: bool = False,
) -> tuple[DeviceSpec, str, Costs, Nodes]:
    """The device with its GEMM peak at the model's compute precision, that precision, the
    costs with the GPU's own link figures, and the nodes."""
    hw = gpu if isinstance(gpu, PlanGpu) else builtin(gpu)
    compute = compute_precision(spec.weights, spec.activation, hw.flops)
    peak = hw.flops.get(compute) or hw.spec.flops
    changes = {k: v for k, v in (("allreduce_latency", hw.link_latency),
               ("internode_bandwidth", hw.internode_bandwidth),
               ("internode_latency", hw.internode_latency)) if v is not None}  # fmt: skip
    source = hw.spec.source.replace("(dense BF16)", f"(dense {compute.upper()})")
    dev = msgspec.structs.replace(hw.spec, flops=peak, source=source)
    nodes = Nodes(gpus_per_node or hw.gpus_per_node, tp_across_nodes)
    return dev, compute, msgspec.structs.replace(c, **changes), nodes


def plan(
    spec: ModelSpec,
    gpu: DeviceSpec | PlanGpu,
    gpus: int,
    work: Workload,
    costs: Costs = DEFAULT_COSTS,
    gpus_per_node: int | None = None,
    tp_across_nodes: bool = False,
) -> Plan:
    dev, compute, costs, nodes = setup(spec, gpu, costs, gpus_per_node, tp_across_nodes)
    lays = layouts(gpus, bool(spec.config.experts))
    rows = [predict(spec, dev, lay, work, costs, nodes) for lay in lays]
    return ranked(spec, dev, gpus, work, costs, rows, compute, nodes)


def ranked(
    spec: ModelSpec,
    dev: DeviceSpec,
    gpus: int,
    work: Workload,
    costs: Costs,
    rows: list[LayoutPlan],
    compute: str,
    nodes: Nodes,
) -> Plan:
    """The plan of ``rows``: feasible ones best first (by throughput per device), then the rest."""
    best_first = sorted((r for r in rows if r.feasible), key=lambda r: -r.per_device)
    ok = [msgspec.structs.replace(r, rank=i) for i, r in enumerate(best_first, 1)]
    bad = [r for r in rows if not r.feasible]
    m = spec.config
    notes = [
        work.describe() + f"; mean context {work.mean_context:,.0f} tokens",
        f"{dev.name}: {dev.flops / 1e12:,.4g} TFLOP/s dense {compute}, "
        f"{dev.bandwidth / 1e12:.3g} TB/s, "
        + (f"{dev.memory_bytes / GB:.0f} GB" if dev.memory_bytes else "no memory figure")
        + (f", link {dev.interconnect / GB:.0f} GB/s per direction" if dev.interconnect else "")
        + f" ({dev.source})",
        f"weights {spec.weights} ({m.dtype_bytes:g} B/param; embedding and LM head "
        f"{m.embed_bytes:g} B), KV cache {spec.kv} ({spec.kv_dtype_bytes:g} B/element), "
        f"GEMMs at the {compute} peak",
    ]
    if gpus > nodes.gpus_per_node:
        notes.append(
            f"{math.ceil(gpus / nodes.gpus_per_node)} nodes of {nodes.gpus_per_node} GPUs; "
            f"between nodes {costs.internode_bandwidth / GB:.0f} GB/s per direction per GPU, "
            f"{costs.internode_latency * 1e6:.0f} µs; TP "
            + ("may span nodes" if nodes.tp_across else "stays within a node")
        )
    if costs.kv_cache_bytes is not None:
        notes.append(f"KV cache fixed at {costs.kv_cache_bytes / GB:.2f} GB per device")
    return Plan(spec.name, dev.name, gpus, work, ok + bad, notes, spec.weights, spec.kv, compute)


def weight_bytes(m: ModelConfig, s: Shard) -> float:
    """Weights held by one rank of PP stage ``s.stage``: its layers (all local experts), the
    embedding on the first stage and the LM head on the last (each split over TP, 16-bit)."""
    dense = 3 * m.hidden * m.intermediate / s.tp
    ffn = dense
    if m.experts and m.experts_per_token:
        local, expert, always = expert_weights(m, s)
        share = m.dense_layers / m.layers
        ffn = share * dense + (1 - share) * (local * expert + always)
    size = s.layers(m.layers) * (attention_weights(m, s) + ffn) * m.dtype_bytes
    table = m.vocab * m.hidden / s.tp
    return size + table * ((s.stage == 0) + (s.stage == s.pp - 1)) * m.embed_bytes


def _reject(lay: Layout, reason: str, w: float = 0.0, a: float = 0.0) -> LayoutPlan:
    return LayoutPlan(lay, False, reason, w / GB, a / GB, 0.0, 0, 0, 0.0, 0.0, 0.0, label=lay.label)


def links(gpu: DeviceSpec, lay: Layout, c: Costs, nodes: Nodes | None = None) -> Links:
    """Each transfer's link: within a node, or between nodes where its group spans them."""
    near = (gpu.interconnect or gpu.bandwidth) * c.link_efficiency
    far = min(c.internode_bandwidth, gpu.interconnect or c.internode_bandwidth)
    far *= c.link_efficiency
    per = nodes.gpus_per_node if nodes else lay.devices
    tp_far, pp_far, ep_far = lay.tp > per, lay.tp * lay.pp > per, lay.dp * lay.tp > per
    return Links(
        tp=far if tp_far else near,
        tp_latency=c.internode_latency if tp_far else c.allreduce_latency,
        pp=far if pp_far else near,
        pp_latency=c.internode_latency if pp_far else c.p2p_latency,
        ep=far if ep_far else near,
    )


def predict(
    spec: ModelSpec,
    gpu: DeviceSpec,
    lay: Layout,
    work: Workload,
    c: Costs = DEFAULT_COSTS,
    nodes: Nodes | None = None,
) -> LayoutPlan:
    """One layout's memory, capacity, decode round, latencies and regime (module docstring)."""
    m = spec.config
    ep = lay.ep
    if m.heads % lay.tp:
        return _reject(lay, f"{m.heads} attention heads do not split over TP={lay.tp}")
    if lay.pp > m.layers:
        return _reject(lay, f"{m.layers} layers do not fill PP={lay.pp} stages")
    if m.experts and ep > 1 and m.experts % ep:
        return _reject(lay, f"{m.experts} experts do not split over EP={ep}")
    if nodes and lay.tp > nodes.gpus_per_node and not nodes.tp_across:
        return _reject(lay, f"TP={lay.tp} would span nodes of {nodes.gpus_per_node} GPUs "
                       "(--tp-across-nodes allows it)")  # fmt: skip
    shards = [Shard(lay.tp, lay.pp, ep, stage) for stage in range(lay.pp)]
    weights = max(weight_bytes(m, s) for s in shards)
    routed = (m.experts_per_token or 0) * (m.moe_intermediate or m.intermediate)
    width = max(float(routed), m.intermediate / lay.tp)
    act = c.max_num_batched_tokens * (4 * m.hidden + 2 * width) * 2 + c.runtime_overhead
    usable = c.gpu_memory_utilization * (gpu.memory_bytes or 0)
    fixed = c.kv_cache_bytes is not None
    kv = c.kv_cache_bytes if c.kv_cache_bytes is not None else usable - weights - act
    if kv <= 0 or (fixed and gpu.memory_bytes and weights + act + kv > usable):
        held = f" + KV cache {kv / GB:.1f} GB" if fixed else ""
        return _reject(
            lay,
            f"weights {weights / GB:,.1f} GB + activations {act / GB:.1f} GB{held} per device "
            f"exceed the {usable / GB:.0f} GB usable ({c.gpu_memory_utilization:g} × "
            f"{(gpu.memory_bytes or 0) / GB:.0f} GB)",
            weights,
            act,
        )
    per_token = max(kv_bytes_per_token(m, s, spec.kv_dtype_bytes) for s in shards)
    max_seqs = math.floor(kv / per_token / work.mean_context)
    if max_seqs < 1:
        return _reject(
            lay,
            f"KV cache {kv / GB:.1f} GB per device holds {kv / per_token:,.0f} tokens, less "
            f"than one sequence ({work.mean_context:,.0f} tokens)",
            weights,
            act,
        )
    demand = c.max_num_seqs
    if work.concurrency:
        demand = min(demand, math.ceil(work.concurrency / lay.dp))
    batch = min(max_seqs, demand)
    link = links(gpu, lay, c, nodes)
    round_s, parts, prefill_s = _round(spec, gpu, lay, work, c, shards, batch, link)
    per_device = batch / round_s / (lay.tp * lay.pp)
    shares = {k: v / round_s for k, v in parts.items()}
    regime, scores = regime_of(shares, batch, demand)
    return LayoutPlan(
        lay, True, "", weights / GB, act / GB, kv / GB, max_seqs, batch, round_s * 1e3,
        per_device * lay.dp * lay.tp * lay.pp, per_device, shares, regime, scores,
        label=lay.label, concurrency=batch * lay.dp, ttft_ms=(prefill_s + round_s) * 1e3,
        tpot_ms=round_s * 1e3,
    )  # fmt: skip


def regime_of(shares: dict[str, float], batch: int, demand: int) -> tuple[str, dict[str, float]]:
    """The regime that agrees with the shares: capacity-bound where the KV cache holds less
    than ``1 − CAPACITY.threshold`` of the batch asked for, else the largest share's. Scores:
    each regime's share of the round (capacity: the share of the batch the cache cannot hold)."""
    scores = {r.name: round(shares.get(r.buckets[0], 0.0), 3) for r in REGIME_RULES}
    scores = {k: v for k, v in scores.items() if v > 0}
    short = 1 - batch / demand
    if short > 0:
        scores[CAPACITY.name] = round(short, 3)
    ordered = dict(sorted(scores.items(), key=lambda kv: -kv[1]))
    by_share = max((k for k in ordered if k != CAPACITY.name), key=lambda k: ordered[k])
    return (CAPACITY.name if short >= CAPACITY.threshold else by_share), ordered


def _roof(cost: StepCost, gpu: DeviceSpec, c: Costs, scale: float = 1.0) -> tuple[str, float]:
    """Roofline time at the efficiencies, ``scale`` = model-parallel efficiency (or 1)."""
    compute = cost.flops / (gpu.flops * c.flops_efficiency * scale)
    memory = cost.bytes / (gpu.bandwidth * c.hbm_efficiency * scale)
    return (b.COMPUTE, compute) if compute >= memory else (b.HBM, memory)


def stage_time(
    spec: ModelSpec,
    gpu: DeviceSpec,
    lay: Layout,
    c: Costs,
    s: Shard,
    step: StepRow,
    context: float,
    routed: int | None = None,
    tokens: float | None = None,
    link: Links | None = None,
) -> dict[str, float]:
    """One engine step of PP stage ``s.stage`` (seconds per bucket, host overhead not
    included): the roofline at the efficiencies, TP all-reduces, EP dispatch + combine and
    the PP hand-off for ``tokens`` (default: the step's) activations, over ``link``
    (default: all within one node)."""
    m = spec.config
    ep = s.ep
    link = link or links(gpu, lay, c)
    scale = c.model_parallel_efficiency if lay.tp * lay.pp > 1 else 1.0
    parts = dict.fromkeys(BUCKETS, 0.0)
    kv_b = kv_bytes_per_token(m, s, spec.kv_dtype_bytes)
    kind, t = _roof(step_cost(m, s, step, context, kv_b, routed), gpu, c, scale)
    parts[kind] += t
    layers = s.layers(m.layers)
    moe_layers = layers * (1 - m.dense_layers / m.layers) if m.experts else 0.0
    if tokens is None:
        tokens = step.context_tokens + step.generation_tokens
    msg = tokens * m.hidden * 2  # BF16 activations
    if lay.tp > 1:
        reduces = 2 * layers - (moe_layers if ep > 1 else 0)
        each = link.tp_latency + 2 * (lay.tp - 1) / lay.tp * msg / link.tp
        parts[b.COLLECTIVE] += reduces * each
    if ep > 1:
        k = m.experts_per_token or 1
        moved = 2 * k * msg * (ep - 1) / ep / link.ep  # dispatch + combine
        latency = c.dispatch_latency + c.combine_latency
        parts[b.MOE_ROUTING] += moe_layers * (latency + moved)
    if lay.pp > 1:
        parts[b.BUBBLE] += link.pp_latency + msg / link.pp
    return parts


def _round(
    spec: ModelSpec,
    gpu: DeviceSpec,
    lay: Layout,
    work: Workload,
    c: Costs,
    shards: list[Shard],
    batch: int,
    link: Links,
) -> tuple[float, dict[str, float], float]:
    """One decode round's length and its bucket time, averaged over the PP stages, and one
    prompt's prefill through all stages."""
    ep = lay.ep
    micro = batch / lay.pp
    finished = micro / work.output  # requests whose prefill lands in each micro-batch step
    decode = StepRow(0, 0, 0, 0, math.ceil(micro), math.ceil(micro))
    prefill = StepRow(0, 0, 1, work.prompt, 0, 0)
    routed = math.ceil(micro) * lay.dp if ep > 1 else None
    stages: list[dict[str, float]] = []
    prefill_s = 0.0
    for s in shards:
        parts = stage_time(
            spec, gpu, lay, c, s, decode, micro * work.mean_context, routed, micro, link
        )
        pre = stage_time(
            spec, gpu, lay, c, s, prefill, 0.0, work.prompt * lay.dp if ep > 1 else None,
            link=link,
        )  # fmt: skip
        prefill_s += sum(pre.values()) + c.step_overhead
        for key, value in pre.items():
            parts[key] += finished * value
        parts[b.HOST] += c.step_overhead
        stages.append(parts)
    slowest = max(sum(p.values()) for p in stages)
    sched = c.schedule_overhead + (c.multiprocess_overhead if lay.tp * lay.pp > 1 else 0.0)
    round_s = max(sched + lay.pp * slowest, lay.pp * sched)
    # each stage works PP micro-batches per round, waits for the engine core (host) and
    # idles the rest (bubble): averaged over the stages, the buckets sum to the round
    total = dict.fromkeys(BUCKETS, 0.0)
    total[b.HOST] += sched
    for parts in stages:
        for key, value in parts.items():
            total[key] += value
        total[b.BUBBLE] += max(0.0, round_s - sched - lay.pp * sum(parts.values())) / lay.pp
    return round_s, total, prefill_s
