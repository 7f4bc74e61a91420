"""The planner's results: a plan of layouts and the calibration it may rest on, with their JSON.

``tracekit plan --json`` writes a ``PlanReport``: typed, versioned (``PLAN_SCHEMA_VERSION``),
validated on write and on read like the Analysis (``tracekit/schema/plan.schema.json`` is
generated from these structs: ``python -m tracekit.core.plan_result``).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from tracekit.core import versioned_json
from tracekit.core.hardware import GIB, DeviceSpec
from tracekit.core.layout import Layout
from tracekit.core.model_config import ModelSpec

#: 2: layouts as the core Layout with their label; RunFit and Calibration with their errors
#: 3: precisions (weights, KV cache, GEMMs), each layout's concurrency, TTFT and TPOT, latency
#: targets (``slo``), and suggestions when nothing fits; Costs with the inter-node link
PLAN_SCHEMA_VERSION: Final = 3


class Workload(msgspec.Struct, frozen=True):
    """Requests of ``prompt`` tokens in, ``output`` out; ``concurrency`` in flight over all
    replicas (None: as many as fit)."""

    name: str
    prompt: int
    output: int
    concurrency: int | None = None

    @property
    def mean_context(self) -> float:
        """Tokens a running sequence holds on average: the prompt plus half the output."""
        return self.prompt + self.output / 2

    def describe(self) -> str:
        conc = f"{self.concurrency} in flight" if self.concurrency else "as many as fit"
        return f"{self.name}: {self.prompt} in / {self.output} out, {conc}"


class Costs(msgspec.Struct, frozen=True, kw_only=True):
    """The model's constants (defaults: roofline peaks; refitted by
    ``analyzers.planning.calibration``)."""

    flops_efficiency: float = 1.0
    hbm_efficiency: float = 1.0
    # Kernel efficiency of a rank in a TP × PP > 1 replica relative to a single-device one
    # (TP's sublinear scaling: smaller GEMMs per rank, fixed per-kernel time). 1.0 until
    # calibration measures both kinds of run; no public figure fixes it for a given model.
    model_parallel_efficiency: float = 1.0
    link_efficiency: float = 1.0
    # NCCL all-reduce of a small (decode) message on one NVLink node: ~20 µs (nccl-tests
    # all_reduce_perf latency at ≤1 MB, 8×H100); vLLM's custom all-reduce is faster at TP ≤ 8.
    allreduce_latency: float = 20e-6
    p2p_latency: float = 10e-6  # one PP send/recv of a decode micro-batch's activations
    # Between nodes (``--gpus-per-node``): one 400 Gb/s NIC per GPU (DGX / HGX H100: eight
    # ConnectX-7), 50 GB/s per direction; a small all-reduce or hand-off across nodes costs
    # tens of µs more than within one (an assumption until calibrated on multi-node runs)
    internode_bandwidth: float = 50e9
    internode_latency: float = 50e-6
    # DeepEP low-latency kernels, EP8, 128 tokens/rank, hidden 7168, top-8 (DeepEP README):
    # dispatch 77 µs, combine 114 µs: the sync across EP ranks dominates at decode sizes.
    dispatch_latency: float = 77e-6
    combine_latency: float = 114e-6
    # Host time per engine step not hidden under device work (the host bucket); 0
    # uncalibrated (the roofline counts none), calibration measures both parts:
    # on each rank per step (input preparation, the model runner's Python), part of the stage
    step_overhead: float = 0.0
    # in the engine core per step (scheduling, output processing): serial with the step at
    # PP = 1; at PP > 1 vLLM V1's batch queue (PP batches in flight) overlaps it with the
    # other micro-batches, so a round lasts max(this + PP × stage, PP × this)
    schedule_overhead: float = 0.0
    # added to it for a TP × PP > 1 replica, which vLLM runs in worker processes (one device:
    # in the engine core's own): the per-step IPC of scheduler output and results
    multiprocess_overhead: float = 0.0
    gpu_memory_utilization: float = 0.9  # vLLM's default
    max_num_seqs: int = 256  # vLLM's default
    max_num_batched_tokens: int = 8192  # vLLM's default chunked-prefill budget
    runtime_overhead: float = 2 * GIB  # CUDA context, CUDA graphs, NCCL buffers per GPU
    # KV-cache bytes per device where the engine fixes them (vLLM CPU: VLLM_CPU_KVCACHE_SPACE
    # per rank, read from a run's blocks); None: what the device's memory leaves.
    kv_cache_bytes: float | None = None


class LayoutPlan(msgspec.Struct, frozen=True):
    """One layout as the model predicts it (``feasible`` False: ``reason`` says why)."""

    layout: Layout
    feasible: bool
    reason: str  # why infeasible; empty when feasible
    weights_gb: float
    activations_gb: float
    kv_gb: float  # KV cache per device
    max_seqs: int  # concurrent sequences per replica at the mean context
    batch: int  # sequences each replica runs
    round_ms: float  # one decode round: every running sequence makes one token
    tokens_per_s: float  # output tokens/s, all replicas
    per_device: float  # output tokens/s per GPU
    shares: dict[str, float] = msgspec.field(default_factory=dict)  # of the round, per bucket
    regime: str = ""
    scores: dict[str, float] = msgspec.field(default_factory=dict)
    label: str = ""  # the layout's label (``Layout.label``)
    rank: int | None = None  # place among the feasible layouts, best first
    concurrency: int = 0  # sequences in flight over all replicas (batch × DP)
    ttft_ms: float = 0.0  # time to first token at that concurrency
    tpot_ms: float = 0.0  # time per output token (one round) at that concurrency


class Slo(msgspec.Struct, frozen=True):
    """Latency targets (``--slo ttft=2s,tpot=50ms``); None: no target."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None

    def met(self, ttft_ms: float, tpot_ms: float) -> bool:
        return (self.ttft_ms is None or ttft_ms <= self.ttft_ms) and (
            self.tpot_ms is None or tpot_ms <= self.tpot_ms
        )

    def describe(self) -> str:
        parts = [f"{k} ≤ {v:,.4g} ms" for k, v in (("TTFT", self.ttft_ms),
                 ("TPOT", self.tpot_ms)) if v is not None]  # fmt: skip
        return ", ".join(parts)


class Plan(msgspec.Struct, frozen=True):
    model: str
    gpu: str
    gpus: int
    workload: Workload
    layouts: list[LayoutPlan]  # feasible, best first; then infeasible
    notes: list[str]
    weights: str = ""  # precision names (``tracekit.core.precision``)
    kv: str = ""
    compute: str = ""  # the precision whose peak times the GEMMs
    slo: Slo | None = None
    suggestions: list[str] = msgspec.field(default_factory=list)  # what would fit, if nothing

    @property
    def best(self) -> LayoutPlan | None:
        return self.layouts[0] if self.layouts and self.layouts[0].feasible else None


class RunFit(msgspec.Struct, frozen=True, kw_only=True):
    """One calibration run: what it achieved and what the fitted model predicts for it."""

    name: str
    path: str
    layout: str
    devices: int
    batch: float  # mean running sequences per engine over its decode steps
    kernel_efficiency: float | None  # modelled time at peak / measured, profiled steps
    collective_ms: float  # exposed collectives per profiled step and rank
    host_ms: float  # per engine step: its length less the modelled device time
    measured_tokens_per_s: float
    predicted_tokens_per_s: float
    measured_round_ms: float
    predicted_round_ms: float
    error: float  # predicted / measured throughput − 1
    round_error: float  # predicted / measured round − 1


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    model: ModelSpec
    device: DeviceSpec
    workload: Workload  # the first run's, as measured
    costs: Costs
    evidence: dict[str, str]  # Costs field → how it was fitted, or why it kept its default
    runs: list[RunFit]
    notes: list[str]
    mean_abs_error: float  # mean |throughput error| over the runs
    max_abs_error: float


class PlanReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``tracekit plan --json`` writes."""

    schema_version: int = PLAN_SCHEMA_VERSION
    tracekit_version: str
    model: str
    gpu: str
    gpus: int
    workload: Workload
    mean_context: float
    best: str | None  # the best layout's label
    layouts: list[LayoutPlan]
    notes: list[str]
    weights: str = ""
    kv: str = ""
    compute: str = ""
    slo: Slo | None = None
    suggestions: list[str] = msgspec.field(default_factory=list)
    calibration: Calibration | None = None


_DECODER = msgspec.json.Decoder(PlanReport)


def to_json(report: PlanReport, indent: int = 2) -> bytes:
    data = msgspec.json.encode(report)
    return msgspec.json.format(data, indent=indent) if indent else data


def from_json(data: bytes, where: str | None = None) -> PlanReport:
    """Read a plan back; a wrong or newer schema is a TracekitError naming ``where``."""
    return versioned_json.decode(data, _DECODER, "plan", PLAN_SCHEMA_VERSION, where)


def json_schema() -> dict[str, Any]:
    return versioned_json.json_schema(
        PlanReport, f"tracekit plan, schema_version {PLAN_SCHEMA_VERSION}"
    )


if __name__ == "__main__":  # regenerate the published schema file
    print(versioned_json.write_schema(json_schema(), "plan.schema.json"))
