"""Regime verdict: the one table of thresholds, and the verdict computed from it.

Each regime is decided by one signal: the share of the analysed time (summed over ranks)
that its buckets hold, or for capacity-bound the share of engine step time during which the
KV cache was full — at least 90% of its blocks in use, or fewer free blocks than one running
sequence holds (``analyzers/kv_stall.py``) — while requests waited or were preempted (from a
capture's ``steps/``). ``score = share / threshold``: a regime qualifies at score ≥ 1; the
highest score wins, the rest are runners-up. Without step records capacity-bound is not
assessed. Compute vs HBM comes from the roofline where the model config is known (else the
name prior); the kv_stall bucket (host/idle while the cache is full and requests wait, and
preemption recompute) is reported with the capacity evidence.

| regime               | bucket(s)    | threshold (share of window) |
|----------------------|--------------|-----------------------------|
| compute-bound        | compute      | 0.50                        |
| hbm-bound            | hbm          | 0.50                        |
| interconnect-bound   | collective   | 0.20                        |
| routing-bound        | moe_routing  | 0.15                        |
| bubble-bound         | bubble       | 0.20                        |
| host-bound           | host         | 0.30                        |
| capacity-bound       | KV full + waiting (steps/) | 0.20          |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tracekit import buckets as b


@dataclass(frozen=True)
class RegimeRule:
    name: str
    label: str
    buckets: tuple[str, ...]  # empty: the signal is KV_SIGNAL, not bucket time
    threshold: float
    advice: tuple[str, ...]


KV_SIGNAL: Final = (
    "KV cache full (≥90% of blocks, or too few free for one more running-size sequence) "
    "while requests wait"
)


REGIME_RULES: Final[tuple[RegimeRule, ...]] = (
    RegimeRule(
        "compute-bound",
        "compute-bound (prefill)",
        (b.COMPUTE,),
        0.50,
        (
            "Compute dominates (typical of prefill): more devices per replica (TP) or more "
            "replicas (DP) add FLOP/s; chunked prefill overlaps it with decode.",
        ),
    ),
    RegimeRule(
        "hbm-bound",
        "HBM-bandwidth-bound (decode)",
        (b.HBM,),
        0.50,
        (
            "Memory traffic dominates (typical of decode): a larger running batch amortises each "
            "weight read; TP spreads weight and KV reads over more HBM; lower-precision weights "
            "or KV cache cut bytes per token.",
        ),
    ),
    RegimeRule(
        "interconnect-bound",
        "interconnect-bound (exposed collectives)",
        (b.COLLECTIVE,),
        0.20,
        (
            "Exposed collectives: at high TP on a dense model use fewer TP ranks per replica "
            "(add DP) or pipeline parallelism across nodes; keep TP within one NVLink domain and "
            "check the custom / symmetric-memory all-reduce is in use.",
        ),
    ),
    RegimeRule(
        "routing-bound",
        "routing/sync-bound (MoE)",
        (b.MOE_ROUTING,),
        0.15,
        (
            "MoE routing and dispatch dominate: a hybrid layout (expert parallelism for the "
            "experts, TP or DP for attention) and fused routing kernels cut synchronisation.",
        ),
    ),
    RegimeRule(
        "bubble-bound",
        "pipeline-bubble-bound",
        (b.BUBBLE,),
        0.20,
        (
            "Pipeline stages wait on each other: fewer PP stages, PP only across nodes, or more "
            "micro-batches / requests in flight to fill the pipeline.",
        ),
    ),
    RegimeRule(
        "host-bound",
        "host-bound (launch / scheduling overhead)",
        (b.HOST,),
        0.30,
        (
            "The device waits on the host: CUDA graphs, async scheduling and larger batches cut "
            "per-step launch and Python overhead.",
        ),
    ),
)

CAPACITY: Final = RegimeRule(
    "capacity-bound",
    "capacity-bound (KV cache full)",
    (),
    0.20,
    (
        "The KV cache caps the running batch (requests wait or are preempted): more KV memory "
        "per replica helps most — raise TP to unlock memory stranded under DP (the capacity "
        "trap), use a smaller KV dtype, or lower max_num_seqs / context length.",
    ),
)

NOT_ASSESSED_CAPACITY: Final = (
    "needs per-step KV-cache usage, running and waiting counts (a tracekit capture's "
    "steps/); not present in this input"
)
