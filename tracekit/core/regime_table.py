"""Regime verdict: the one table of thresholds, and the verdict computed from it.

Each regime is decided by one signal: the share of the analysed time (summed over ranks)
that its buckets hold, or for capacity-bound the share of engine step time during which the
KV cache was full — at least 90% of its blocks in use, or fewer free blocks than one running
sequence holds (``analyzers/rank/kv_stall.py``) — while requests waited or were preempted (from a
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

The evidence and the figures use the thresholds defined below the table, too (``KV_FULL``,
``IDLE_EVIDENCE``, ``HOST_EVIDENCE``, ``OUTLIER_FACTOR``, ``IDLE_GAP``, ``WINDOW_TOLERANCE``,
``COMPILE_SHARE``, ``MIN_DELTA``): no threshold lives anywhere else.

Advice is per device: ``advice`` holds the GPU levers, ``cpu_advice`` the CPU ones (vLLM on
CPU: thread binding, ``VLLM_CPU_KVCACHE_SPACE``, bf16 only with AVX512-BF16 / AMX, oneDNN,
batch size, TP within a socket). CUDA graphs are advised only when a GPU run had them off
(``GRAPHS_OFF``); compiled mode only when a CPU run was eager (``CPU_EAGER``); the eager /
graphs state is read from the run (``analyzers.read.run_config.execution``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import msgspec

from tracekit.core import buckets as b


@dataclass(frozen=True)
class RegimeRule:
    name: str
    label: str
    buckets: tuple[str, ...]  # empty: the signal is KV_SIGNAL, not bucket time
    threshold: float
    advice: tuple[str, ...]  # GPU runs
    cpu_advice: tuple[str, ...] = ()  # CPU runs


#: The other thresholds a run's figures use; with the rules below, every threshold is here.
#: KV-cache usage at or above this share of the blocks counts as full (the capacity signal).
KV_FULL: Final = 0.90
#: The verdict cites idle time when the device is idle over this share of the window.
IDLE_EVIDENCE: Final = 0.30
#: The verdict cites host overhead (and the profiler's share of it) above this share.
HOST_EVIDENCE: Final = 0.10
#: A step lasting over this many times its engine's median step is an outlier (left out of
#: step means; a cold first step always is).
OUTLIER_FACTOR: Final = 10.0
#: An engine step gap over this many median gaps is idle time or capture overhead: throughput
#: counts it as one median gap.
IDLE_GAP: Final = 10
#: A rank profiled over a window this much longer than the run's common one is named.
WINDOW_TOLERANCE: Final = 0.05
#: Compilation inside the profiled window is a warning above this share of it.
COMPILE_SHARE: Final = 0.01
#: A bucket must differ by at least this share between compared runs to explain their gap.
MIN_DELTA: Final = 0.01
#: A rank is named a straggler when it arrived last at this share of its group's matched
#: collectives (at least STRAGGLER_MIN_CALLS of them), and the others' waits for it are at
#: least STRAGGLER_WAIT_SHARE of their analysed windows.
STRAGGLER_LAST_SHARE: Final = 0.75
STRAGGLER_MIN_CALLS: Final = 4
STRAGGLER_WAIT_SHARE: Final = 0.01
#: A straggler's kernel (or host) time above the others' median explains its lateness when
#: the excess is at least this share of the time the others waited for it, per rank.
STRAGGLER_EXPLAINS: Final = 0.5
#: The stragglers report lists this many collectives with the longest waits.
STRAGGLER_WORST: Final = 10

KV_SIGNAL: Final = (
    f"KV cache full (≥{KV_FULL:.0%} of blocks, or too few free for one more running-size "
    "sequence) while requests wait"
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
        (
            "Compute dominates (typical of prefill): on CPU the matmuls run through oneDNN "
            "(_C::onednn_mm; vLLM logs 'Failed to create oneDNN linear' when it falls back to "
            "aten::mm); TP within one socket adds cores, each rank bound to its own "
            "(VLLM_CPU_OMP_THREADS_BIND); chunked prefill overlaps it with decode.",
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
        (
            "Memory traffic dominates (typical of decode): a larger running batch "
            "(max_num_seqs) amortises each weight read; TP across NUMA nodes adds memory "
            "channels when each rank's threads are bound to its own node "
            "(VLLM_CPU_OMP_THREADS_BIND); bf16 weights and KV cache halve bytes per token.",
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
        (
            "Exposed collectives: on CPU, TP all-reduce goes through shared memory "
            "(_C::shm_allreduce) — check it is in use and not gloo (c10d::allreduce_, far "
            "slower); keep TP ranks within one socket, each bound to its own cores "
            "(VLLM_CPU_OMP_THREADS_BIND), or use fewer TP ranks.",
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
        (
            "MoE routing dominates: on CPU the experts run in _C::cpu_fused_moe and expert "
            "parallelism is not available; larger batches (max_num_seqs, "
            "max_num_batched_tokens) amortise routing and top-k per step.",
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
        (
            "Pipeline stages wait on each other: fewer PP stages (TP within a socket instead), "
            "or more requests in flight (max_num_seqs) to fill the pipeline.",
        ),
    ),
    RegimeRule(
        "host-bound",
        "host-bound (launch / scheduling overhead)",
        (b.HOST,),
        0.30,
        (
            "The device waits on the host: async scheduling and larger batches cut per-step "
            "launch and Python overhead.",
        ),
        (
            "Host time dominates: on CPU the host is the device, and per-op dispatch and "
            "per-step Python compete with the model for the same cores — bind each rank's "
            "OpenMP threads to its own physical cores (VLLM_CPU_OMP_THREADS_BIND) leaving a core "
            "for the engine process, and use larger batches (max_num_seqs, "
            "max_num_batched_tokens) to amortise per-step overhead.",
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
    (
        "The KV cache caps the running batch (requests wait or are preempted): on CPU its size "
        "is VLLM_CPU_KVCACHE_SPACE (GiB per rank) — raise it if RAM allows; TP splits KV heads "
        "over ranks; a smaller KV dtype or a lower max_num_seqs / context length also help.",
    ),
)

GRAPHS_OFF: Final = (
    "CUDA graphs were off in this run ({source}): with them on (no --enforce-eager, "
    "cudagraph_mode not NONE) each decode step's kernels launch as one graph, cutting "
    "per-kernel launch overhead."
)
CPU_EAGER: Final = (
    "This CPU run was eager ({source}): vLLM's compiled mode (torch.compile, the default "
    "without --enforce-eager) fuses ops and cuts per-op dispatch on the host."
)
CPU_BF16: Final = (
    "The model runs in bf16: on CPU bf16 matmuls reach full speed only with AVX512-BF16 or "
    "AMX (avx512_bf16 / amx_bf16 in /proc/cpuinfo); without them fp32 (--dtype float32) is "
    "faster, and oneDNN may be bypassed."
)

NOT_ASSESSED_CAPACITY: Final = (
    "needs per-step KV-cache usage, running and waiting counts (a tracekit capture's "
    "steps/); not present in this input"
)


# --- the verdict as the Analysis holds it ------------------------------------------------


class Signal(msgspec.Struct, frozen=True, kw_only=True):
    """The figure that decided the verdict: the winning regime's signal, as a share of the
    analysed time (summed over ``ranks``) or of engine step time, against its threshold."""

    what: str  # the buckets it sums (``compute``, ``collective``, …), or the KV-cache signal
    share: float
    of: Literal["analysed time", "engine step time"]
    ranks: int
    source: str  # "trace buckets", or the step records it came from (steps/, vLLM log lines)
    threshold: float
    score: float  # share / threshold; below 1 no regime reached its threshold


#: The figures that can stand behind a verdict, each a part of the Analysis: ``basis``
#: (``compute_hbm_basis``), ``step_mix`` (``step_stats``), ``roofline`` (each rank's
#: ``roofline``), ``kv``, ``collectives``, ``p2p`` (the collectives' p2p kind), ``bubbles``,
#: ``moe``, ``engine`` (the KV-cache timeline), ``idle`` and ``host`` (the bucket shares), and
#: ``profiler_overhead`` (``context.overhead``). Renderers word them from those parts.
EvidenceKind = Literal[
    "basis",
    "step_mix",
    "roofline",
    "kv",
    "collectives",
    "p2p",
    "bubbles",
    "moe",
    "engine",
    "idle",
    "host",
    "profiler_overhead",
]


class RunnerUp(msgspec.Struct, frozen=True):
    name: str
    score: float


class Regime(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    label: str
    scores: dict[str, float]
    signal: Signal
    evidence: list[EvidenceKind]  # the parts of the Analysis that support the verdict
    advice: list[str]
    runners_up: list[RunnerUp]
    not_assessed: dict[str, str]


# --- the steady window (analyzers/run/steady_state.py) -----------------------------------
#: Fewer engine steps than this in the window (or on the plateau once warm-up, ramp and drain
#: are left out) is too few to call anything steady: the whole window is analysed.
STEADY_MIN_STEPS: Final = 8
#: The plateau's batch: this percentile of the steps' batch sizes (requests per step), the
#: batch that the busiest quarter of the steps runs at or above.
STEADY_PLATEAU_PERCENTILE: Final = 75
#: A step is on the plateau when its batch is at least this share of the plateau's batch;
#: leading steps below it are the ramp, trailing ones the drain.
STEADY_BATCH_SHARE: Final = 0.8
#: A leading step slower than this many times the plateau's median step is warm-up
#: (compilation, cold caches, allocator growth).
STEADY_SLOW_FACTOR: Final = 2.0
#: A leading step whose prefill tokens are more than this share of its tokens is warm-up
#: (the first prompts), when the window decodes at all (some step's decode tokens outweigh
#: its prefill tokens); a prefill-only run keeps its prefill steps.
STEADY_PREFILL_SHARE: Final = 0.5
