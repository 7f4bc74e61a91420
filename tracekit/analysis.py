"""The Analysis result: typed, versioned, validated on write and on read.

The structs below *are* the schema; ``tracekit/schema/analysis.schema.json`` is generated
from them (``python -m tracekit.analysis``) and a test keeps the two identical. Every reader
checks the attribution invariant: each rank's buckets sum to its window (±1 µs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from tracekit.buckets import BUCKETS
from tracekit.errors import TracekitError
from tracekit.model import RankId

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION: Final = 1
TOLERANCE_NS: Final = 1_000  # the invariant's ±1 µs


class OpTime(msgspec.Struct, frozen=True):
    """A kernel / op name's time: device time on GPU ranks, self time on CPU ranks."""

    name: str
    family: str
    bucket: str
    count: int
    total_ns: int


class Step(msgspec.Struct, frozen=True):
    start_ns: int
    dur_ns: int
    kind: Literal["prefill", "decode", "mixed"]
    context_requests: int
    context_tokens: int
    generation_requests: int
    generation_tokens: int


class StepStats(msgspec.Struct, frozen=True):
    """Steps of one kind across the run's engines (one annotating rank per DP replica)."""

    kind: str  # prefill / decode / mixed / all
    count: int
    context_tokens: int
    generation_tokens: int
    total_ns: int
    mean_ns: int
    p50_ns: int
    p90_ns: int
    max_ns: int


class RankResult(msgspec.Struct, frozen=True, kw_only=True):
    rank: int | None
    identity: RankId
    label: str
    path: str
    device: Literal["gpu", "cpu"]
    devices: list[int]
    device_names: list[str]
    clock: str
    window_start_ns: int
    window_ns: int
    buckets: dict[str, int]
    families: dict[str, int]
    overlapped: dict[str, int]
    event_counts: dict[str, int]
    graph_kernels: int
    top_ops: list[OpTime]
    unclassified: list[OpTime]
    steps: list[Step]
    ignored: dict[str, int] = msgspec.field(default_factory=dict)


class TimelinePoint(msgspec.Struct, frozen=True):
    ts_ns: int
    kv_usage: float
    running: int
    waiting: int
    preemptions: int


class EngineStats(msgspec.Struct, frozen=True, kw_only=True):
    """Scheduler / KV-cache figures from a capture's per-step records (time-weighted)."""

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


class Regime(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    label: str
    scores: dict[str, float]
    evidence: list[str]
    advice: list[str]
    runners_up: list[str]
    not_assessed: dict[str, str]


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
    try:
        version = msgspec.json.decode(data, type=dict[str, Any]).get("schema_version")
    except msgspec.DecodeError as exc:
        raise TracekitError(where, f"not an analysis JSON ({exc})") from None
    if version != SCHEMA_VERSION:
        raise TracekitError(
            where,
            f"analysis schema_version {version!r}; this tracekit reads version {SCHEMA_VERSION}",
        )
    try:
        analysis = _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise TracekitError(where, f"analysis JSON does not match schema ({exc})") from None
    check_invariant(analysis, where)
    return analysis


def json_schema() -> dict[str, Any]:
    schema = msgspec.json.schema(Analysis)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"tracekit analysis, schema_version {SCHEMA_VERSION}"
    return schema


if __name__ == "__main__":  # regenerate the published schema file
    from pathlib import Path

    out = Path(__file__).with_name("schema") / "analysis.schema.json"
    out.write_bytes(msgspec.json.format(msgspec.json.encode(json_schema()), indent=2) + b"\n")
    print(out)
