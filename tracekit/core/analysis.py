"""The Analysis result: typed, versioned, validated on write and on read.

The structs below *are* the schema; ``tracekit/schema/analysis.schema.json`` is generated
from them (``python -m tracekit.core.analysis``) and a test keeps the two identical. Every reader
checks the attribution invariant: each rank's buckets sum to its window (±1 µs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from tracekit.core import versioned_json
from tracekit.core.buckets import BUCKETS
from tracekit.core.errors import TracekitError
from tracekit.core.hardware import DeviceSpec
from tracekit.core.kv_reads import KvReads
from tracekit.core.regime_table import Regime
from tracekit.core.run_context import RunContext
from tracekit.core.steady_state import SteadyState
from tracekit.core.stragglers import Stragglers
from tracekit.core.trace_model import RankId

if TYPE_CHECKING:
    import pandas as pd

#: 2: the verdict's deciding signal and runners-up are data (``Signal``, ``RunnerUp``); kinds
#: are Literals
SCHEMA_VERSION: Final = 2
TOLERANCE_NS: Final = 1_000  # the invariant's ±1 µs
NAME_PRIOR: Final = "name prior"
ROOFLINE: Final = "roofline (model config + step tokens)"
SHAPES: Final = "roofline (trace shapes)"


class OpTime(msgspec.Struct, frozen=True):
    """A kernel / op name's time: device time on GPU ranks, self time on CPU ranks."""

    name: str
    family: str
    bucket: str
    count: int
    total_ns: int


StepKind = Literal["prefill", "decode", "mixed"]
#: a step kind, or every step
StepGroup = Literal["prefill", "decode", "mixed", "all"]
OpKind = Literal["gemm", "attention", "elementwise"]
CollectiveName = Literal[
    "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "other_collective", "p2p"
]


class Step(msgspec.Struct, frozen=True):
    start_ns: int
    dur_ns: int
    kind: StepKind
    context_requests: int
    context_tokens: int
    generation_requests: int
    generation_tokens: int


class StepStats(msgspec.Struct, frozen=True):
    """Steps of one kind *in the profiled window* (the trace's step annotations), across the
    run's engines (one annotating rank per DP replica). Token counts and total / max cover
    every step; mean / p50 / p90 leave out the ``excluded`` outliers (longer than
    ``analyzers.run.step_flags.OUTLIER_FACTOR`` × the window's median step)."""

    kind: StepGroup
    count: int
    context_tokens: int
    generation_tokens: int
    total_ns: int
    mean_ns: int
    p50_ns: int
    p90_ns: int
    max_ns: int
    excluded: int = 0  # outlier steps left out of mean / p50 / p90
    scope: str = "profiled window (trace)"


class KindRoofline(msgspec.Struct, frozen=True, kw_only=True):
    """One rank's modelled steps of one kind (prefill / decode / mixed / all)."""

    kind: StepGroup
    steps: int
    compute_steps: int  # steps whose intensity is at or above the ridge point
    flops: float  # modelled FLOPs (model config + step tokens, this rank's shard)
    bytes: float  # modelled bytes: weights once per step, KV read + written, activations
    intensity: float  # FLOP/byte
    time_ns: int  # the steps' duration
    flops_pct: float | None  # achieved FLOP/s as % of peak; None when above peak
    bandwidth_pct: float | None
    model_error: str | None = None  # set when an achieved figure exceeds the peak


class OpKindRoofline(msgspec.Struct, frozen=True, kw_only=True):
    """One rank's ops of one kind (gemm / attention / elementwise) costed from their shapes."""

    kind: OpKind
    ops: int  # calls (the outermost costed op of each call tree) that own time
    compute_ops: int  # calls whose intensity is at or above the ridge point
    flops: float  # from the calls' recorded input shapes (analyzers/planning/op_cost.py)
    bytes: float
    intensity: float  # FLOP/byte
    time_ns: int  # GPU: the calls' kernels' device time; CPU: the calls' duration
    flops_pct: float | None  # achieved FLOP/s as % of peak; None when above peak
    bandwidth_pct: float | None
    above_peak: int = 0  # calls whose own achieved FLOP/s or bandwidth exceeds the peak
    model_error: str | None = None  # set when this kind's achieved figure exceeds the peak
    source: str = "trace shapes"


class RankRoofline(msgspec.Struct, frozen=True, kw_only=True):
    basis: str  # ROOFLINE (model config steps), SHAPES (ops' shapes only) or NAME_PRIOR
    device: str
    ridge: float  # FLOP/byte
    kinds: list[KindRoofline]
    decided_ns: int  # compute + hbm time inside modelled steps, split by the roofline
    notes: list[str]
    ops: list[OpKindRoofline] = msgspec.field(default_factory=list)  # from trace shapes
    ops_decided_ns: int = 0  # compute + hbm time of shape-costed ops (and their kernels)
    #: busy time by what decided it: trace_shapes / capture_shapes / model_config / name_rules
    costed_ns: dict[str, int] = msgspec.field(default_factory=dict)
    #: graph-replayed device time per decoder layer and op kind (capture merge, where the
    #: capture trace recorded module frames); empty otherwise
    layers_ns: dict[int, dict[str, int]] = msgspec.field(default_factory=dict)


class RankKv(msgspec.Struct, frozen=True):
    """This rank's kv_stall bucket, by cause."""

    waiting_ns: int  # host / idle inside steps with the KV cache full while requests wait
    recompute_ns: int  # work recomputing preempted requests (token share of their steps)
    recompute_tokens: int  # tokens recomputed in the traced steps (G − M of each step)


class RankResult(msgspec.Struct, frozen=True, kw_only=True):
    rank: int | None
    identity: RankId
    label: str
    path: str
    device: Literal["gpu", "cpu"]
    devices: list[int]
    device_names: list[str]
    clock: str
    window_start_ns: int  # the analysed window: the run's common window (analyzers/run/window.py)
    window_ns: int
    own_window_start_ns: int | None = None  # the span this rank itself was profiled over
    own_window_ns: int | None = None
    buckets: dict[str, int]
    families: dict[str, int]
    overlapped: dict[str, int]
    event_counts: dict[str, int]
    graph_kernels: int
    top_ops: list[OpTime]
    unclassified: list[OpTime]
    steps: list[Step]
    ignored: dict[str, int] = msgspec.field(default_factory=dict)
    compute_hbm_basis: str = NAME_PRIOR
    roofline: RankRoofline | None = None
    kv: RankKv | None = None


class TimelinePoint(msgspec.Struct, frozen=True):
    ts_ns: int
    kv_usage: float
    running: int
    waiting: int
    preemptions: int


class EngineStats(msgspec.Struct, frozen=True, kw_only=True):
    """Scheduler / KV-cache figures over the *whole run* from a capture's per-step records
    (``steps/``), not only the profiled window. Means and shares are time-weighted over the
    counted steps: the engine's first (cold) step and long gaps are left out
    (``excluded_steps``, ``RunContext.excluded``); steps, span, step time, peaks, tokens and
    preemptions count every step."""

    engines: int
    steps: int
    span_ns: int
    step_time_ns: int
    preemptions: int
    kv_usage_max: float
    kv_usage_mean: float
    running_max: int
    running_mean: float
    waiting_max: int
    waiting_share: float  # share of step time with requests waiting
    kv_full_waiting_ns: int  # KV cache ≥ 90% full while requests wait or are preempted
    kv_full_waiting_share: float
    prefill_tokens: int
    decode_tokens: int
    timeline: list[TimelinePoint]
    source: str = "steps/"  # or "vLLM log lines": one sample per logging interval
    preemptions_measured: bool = True  # False: the records carry no preemption counts
    excluded_steps: int = 0  # first (cold) step and long gaps, left out of means and shares
    excluded_ns: int = 0
    scope: str = "whole run (steps/)"


class KvReport(msgspec.Struct, frozen=True, kw_only=True):
    """KV-cache capacity against the running batch, preemptions and the time they cost."""

    stalled_share: float  # of engine step time: cache full while requests wait (steps/)
    block_size: int | None
    usable_blocks: int | None  # blocks minus vLLM's null block
    bytes_per_token: int | None  # per rank: 2 · layers/pp · kv heads/tp · head dim · dtype
    cache_bytes: int | None  # per rank
    tokens_per_sequence: float | None  # observed while full: block-rounded, from KV usage
    ceiling: int | None  # sequences the cache holds at that context
    ceiling_at_max_len: int | None  # ... at max_model_len
    running_max: int
    running_waiting_mean: float | None  # mean running batch while requests waited
    preemptions: int  # from steps/
    recompute_tokens: int  # traced window, one rank per DP replica
    stall_ns: int  # kv_stall bucket over all ranks
    stall_share: float  # of the analysed time
    evidence: list[str]
    max_num_seqs: int | None = None  # scheduler limit on the running batch
    max_num_batched_tokens: int | None = None  # scheduler limit on a step's tokens
    limits_source: str | None = None  # "manifest scheduler" or "manifest argv"
    # the limit that held the most waiting-step time: "kv_blocks", "max_num_seqs",
    # "max_num_batched_tokens", "unknown"; None: no request waited
    binding_limit: str | None = None
    seqs_capped_share: float = 0.0  # of step time: running batch at max_num_seqs, requests wait
    reads: KvReads | None = None  # KV bytes decode attention read (steps/ decode_context)


class CollectiveKind(msgspec.Struct, frozen=True, kw_only=True):
    kind: CollectiveName
    calls: int  # over all ranks
    exposed_ns: int  # exclusive: not hidden under work (collective or bubble bucket)
    overlapped_ns: int  # live but hidden under higher-priority work
    matched: int  # calls matched across the ranks of a group (i-th call on each rank)
    skew_mean_ns: int  # mean over matched calls of (last arrival − first arrival)
    skew_max_ns: int
    bus_bandwidth: float | None  # bytes/s, NCCL bus-bandwidth convention
    bus_bandwidth_pct: float | None  # of the device's interconnect peak; None above peak
    size_source: str | None  # where message sizes came from


class RankWait(msgspec.Struct, frozen=True):
    label: str
    wait_ns: int  # over matched collectives: time from this rank's arrival to the last one's
    last_arrivals: int  # matched collectives this rank arrived at last (the straggler)


class Collectives(msgspec.Struct, frozen=True, kw_only=True):
    kinds: list[CollectiveKind]
    waits: list[RankWait]
    evidence: list[str]


class PipelineStage(msgspec.Struct, frozen=True):
    pp: int
    ranks: int
    window_ns: int
    bubble_ns: int
    fraction: float


class Bubbles(msgspec.Struct, frozen=True, kw_only=True):
    stages: list[PipelineStage]
    fraction: float  # bubble time over all stages' windows
    evidence: list[str]


class MoeReport(msgspec.Struct, frozen=True, kw_only=True):
    routing_ns: int  # moe_routing bucket: gating, top-k, sort/permute, EP dispatch/combine
    expert_ns: int  # expert GEMM time (moe_gemm family)
    routing_share: float  # routing / (routing + expert)
    experts: int | None
    experts_per_token: int | None
    evidence: list[str]


class Peaks(msgspec.Struct, frozen=True, kw_only=True):
    """Where the roofline's peaks came from, and whether the run's own figures exceed them."""

    # "capture probe" (the CPU probe the manifest recorded), "spec table" (GPU), "given" (by
    # the caller of the library), or "none"
    origin: Literal["capture probe", "spec table", "given", "none"]
    source: str  # the peaks' source in words, or why there are none
    # figures above the peak make it suspect: the worst ratio and where; the compute vs HBM
    # split then does not decide the verdict
    suspect: str | None = None
    worst_ratio: float | None = None  # achieved / peak of the worst figure above the peak


class EngineWarning(msgspec.Struct, frozen=True, kw_only=True):
    """A vLLM log line that changes performance: a kernel or backend fallback, a feature off
    (``analyzers/read/engine_warnings.py`` lists the kinds and the texts they match)."""

    kind: str  # e.g. gemm_fallback, collective_fallback, enforce_eager, async_scheduling_off
    effect: str  # what it changes, in words
    message: str  # the first matching line's message (ANSI codes and log prefix removed)
    count: int  # matching lines over the run's logs (one per process that logged it)
    origin: str | None  # where vLLM logged it, from the line's prefix ("utils.py:598")
    log: str  # the run directory's log file(s) that hold it ("logs/stdout.log")


class Analysis(msgspec.Struct, frozen=True, kw_only=True):
    schema_version: int = SCHEMA_VERSION
    tracekit_version: str
    source: str
    run_dir: str | None
    device: Literal["gpu", "cpu"]
    compute_hbm_basis: str
    ranks: list[RankResult]
    step_stats: list[StepStats]
    regime: Regime
    warnings: list[str]
    engine: EngineStats | None = None
    manifest: dict[str, Any] | None = None
    hardware: DeviceSpec | None = None
    kv: KvReport | None = None
    collectives: Collectives | None = None
    bubbles: Bubbles | None = None
    moe: MoeReport | None = None
    context: RunContext | None = None
    peaks: Peaks | None = None
    engine_warnings: list[EngineWarning] = msgspec.field(default_factory=list)  # vLLM's logs
    stragglers: Stragglers | None = None  # who arrives last at collectives (core/stragglers)
    steady: SteadyState | None = None  # the analysed window: steady or whole (core/steady_state)

    # --- derived views (pandas), built on demand -------------------------------------------
    def buckets_frame(self) -> pd.DataFrame:
        """One row per rank, one column per bucket (ns), plus window and label."""
        import pandas as pd

        rows = [
            {"rank": r.rank, "label": r.label, "window_ns": r.window_ns, **r.buckets}
            for r in self.ranks
        ]
        return pd.DataFrame(rows, columns=["rank", "label", "window_ns", *BUCKETS])

    def steps_frame(self) -> pd.DataFrame:
        import pandas as pd

        rows = [{"rank": r.rank, **msgspec.structs.asdict(s)} for r in self.ranks for s in r.steps]
        return pd.DataFrame(rows, columns=["rank", *Step.__struct_fields__])

    def ops_frame(self) -> pd.DataFrame:
        import pandas as pd

        rows = [
            {"rank": r.rank, **msgspec.structs.asdict(o)} for r in self.ranks for o in r.top_ops
        ]
        return pd.DataFrame(rows, columns=["rank", *OpTime.__struct_fields__])


def check_invariant(analysis: Analysis, where: str | None = None) -> None:
    """Every rank's buckets are the DESIGN.md buckets and sum to its window (±1 µs)."""
    for rank in analysis.ranks:
        if set(rank.buckets) != set(BUCKETS):
            raise TracekitError(
                where,
                f"{rank.label}: buckets {sorted(rank.buckets)} are not "
                f"the design buckets {list(BUCKETS)}",
            )
        total = sum(rank.buckets.values())
        if abs(total - rank.window_ns) > TOLERANCE_NS or min(rank.buckets.values()) < 0:
            raise TracekitError(
                where,
                f"{rank.label}: buckets sum to {total} ns but the window is {rank.window_ns} ns",
            )


_DECODER = msgspec.json.Decoder(Analysis)


def to_json(analysis: Analysis, indent: int = 2) -> bytes:
    check_invariant(analysis)
    data = msgspec.json.encode(analysis)
    return msgspec.json.format(data, indent=indent) if indent else data


def from_json(data: bytes, where: str | None = None) -> Analysis:
    analysis = versioned_json.decode(data, _DECODER, "analysis", SCHEMA_VERSION, where)
    check_invariant(analysis, where)
    return analysis


def json_schema() -> dict[str, Any]:
    return versioned_json.json_schema(
        Analysis, f"tracekit analysis, schema_version {SCHEMA_VERSION}"
    )


if __name__ == "__main__":  # regenerate the published schema file
    print(versioned_json.write_schema(json_schema(), "analysis.schema.json"))
