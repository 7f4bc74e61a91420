"""Run-level views of who waits on whom: pipeline bubbles per PP stage, and MoE routing.

**Bubbles.** A stage's ``bubble`` bucket is its time blocked in point-to-point receives
(NCCL SendRecv, vLLM's shared-memory recv): waiting for the previous stage's activations.
Step alignment adds what p2p does not show: the time a stage sits between its own steps
while another stage of its pipeline is still inside the same step (the i-th step on each
stage is the same engine step), the pipeline's drain. That figure is reported, not moved
into a bucket.

**MoE.** Routing (gating, top-k, sort/permute, EP dispatch/combine: the ``moe_routing``
bucket) against expert GEMM time (the ``moe_gemm`` family). Expert load imbalance needs
per-expert work, which fused MoE kernels (one call per layer for all experts) do not show.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from analyzers.rank.digest import RankDigest
from tracekit.core.analysis import Bubbles, MoeReport, PipelineStage, RankResult
from tracekit.core.buckets import BUBBLE, MOE_ROUTING
from tracekit.core.model_config import ModelConfig


def bubbles(digests: Sequence[RankDigest], pp: int) -> Bubbles | None:
    """Per PP stage; None unless the layout or the ranks' identities show pipeline stages."""
    ranks = [d.result for d in digests]
    stages: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(ranks):
        stages[r.identity.pp or 0].append(i)
    if pp < 2 and len(stages) < 2:
        return None
    rows = []
    for stage in sorted(stages):
        members = [ranks[i] for i in stages[stage]]
        window = sum(r.window_ns for r in members)
        bubble = sum(r.buckets[BUBBLE] for r in members)
        rows.append(
            PipelineStage(stage, len(members), window, bubble, bubble / window if window else 0.0)
        )
    window = sum(s.window_ns for s in rows)
    total = sum(s.bubble_ns for s in rows)
    evidence = [
        f"bubbles (p2p receive waits): {total / window:.1%} of all stages' time; "
        + ", ".join(f"pp{s.pp} {s.fraction:.1%}" for s in rows)
        + " (trace: p2p family)"
    ]
    drain = _drain(digests)
    if drain:
        evidence.append(
            "between their own steps while another stage was still in the same step: "
            + ", ".join(f"pp{k} {v / 1e6:.2f} ms" for k, v in sorted(drain.items()))
            + " (step alignment across ranks; reported, not in a bucket)"
        )
    return Bubbles(stages=rows, fraction=total / window if window else 0.0, evidence=evidence)


def _drain(digests: Sequence[RankDigest]) -> dict[int, int]:
    """Per stage: gaps after its i-th step that other stages' i-th step still covers."""
    spans: dict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for d in digests:
        if d.step_start_ns is not None and d.step_end_ns is not None:
            spans[d.identity.pp or 0].append((d.step_start_ns, d.step_end_ns))
    if len(spans) < 2:
        return {}
    n = min(len(st) for runs in spans.values() for st, _ in runs)
    if n < 2:
        return {}
    ends_all = np.max([en[:n] for runs in spans.values() for _, en in runs], axis=0)
    out: dict[int, int] = {}
    for stage, runs in spans.items():
        total = 0
        for st, en in runs:
            gap_end = np.minimum(st[1:n], ends_all[: n - 1])
            total += int(np.clip(gap_end - en[: n - 1], 0, None).sum())
        out[stage] = total // len(runs)
    return out


def moe_report(ranks: Sequence[RankResult], model: ModelConfig | None) -> MoeReport | None:
    routing = sum(r.buckets[MOE_ROUTING] for r in ranks)
    expert = sum(r.families.get("moe_gemm", 0) for r in ranks)
    if not routing and not expert:
        return None
    share = routing / (routing + expert) if routing + expert else 0.0
    experts = model.experts if model else None
    top_k = model.experts_per_token if model else None
    config = f" ({experts} experts, top-{top_k}: model config)" if experts and top_k else ""
    evidence = [
        f"MoE routing {routing / 1e6:.2f} ms vs expert GEMMs {expert / 1e6:.2f} ms: routing "
        f"is {share:.1%} of MoE time{config} (trace: moe_routing bucket, moe_gemm family)",
        "expert load imbalance: not measurable from a profiler trace of fused MoE (one call "
        "per layer runs every expert; the routing is recorded only as the [tokens, top-k] "
        "shape of an id tensor whose values Kineto does not keep)",
    ]
    return MoeReport(
        routing_ns=routing,
        expert_ns=expert,
        routing_share=share,
        experts=experts,
        experts_per_token=top_k,
        evidence=evidence,
    )
