"""Validation on the real public GPU traces in ../shared/traces (skipped where absent)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import tracekit
from analyzers.classify import FAMILIES, classify_events
from analyzers.rules import FAMILY_BUCKET
from tests.conftest import SHARED_TRACES, shared
from tracekit.analysis import from_json
from tracekit.cli import main
from tracekit.model import Kind

KINETO = [
    "hf_h100_qwen1.5_0.5b/trace.json.gz",
    "hta_2rank",
    "hta_cpu_only/rank-34.pt.trace.json.gz",
    "hta_nccl_relative_ts/rank-0.json.gz",
    "hta_v100_allreduce/rank-1.json.gz",
    "sglang_mi300x_qwen3_8b_decode/trace.json.gz",
    "vllm_mi300x_decode_cudagraph/graph_execution.json.gz",
    "vllm_mi300x_decode_cudagraph/capture_traces",
    "nsys_a100_saxpy_mpi/report.sqlite",
]


@pytest.mark.parametrize("relative", KINETO)
def test_every_trace_analyses_to_valid_json(relative: str) -> None:
    path = shared(relative)
    result = CliRunner().invoke(main, ["analyze", str(path), "--json"])
    assert result.exit_code == 0, result.stderr
    analysis = from_json(result.stdout.encode())  # schema + invariant checked on read
    for rank in analysis.ranks:
        assert abs(sum(rank.buckets.values()) - rank.window_ns) <= 1_000


def _device_idle_independently(path: Path) -> float:
    """Span minus the union of kernel/memcpy/memset intervals, from the raw JSON (µs)."""
    doc = json.loads(gzip.decompress(path.read_bytes()))
    spans = sorted(
        (e["ts"], e["ts"] + e.get("dur", 0))
        for e in doc["traceEvents"]
        if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")
    )
    lo, hi = spans[0][0], max(end for _, end in spans)
    busy, cur_s, cur_e = 0.0, spans[0][0], spans[0][1]
    for s, e in spans[1:]:
        if s > cur_e:
            busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    return (hi - lo - busy) / (hi - lo)


@pytest.mark.parametrize(
    "relative", [k for k in KINETO if k.endswith(".gz") and "cpu_only" not in k]
)
def test_device_idle_matches_independent_count(relative: str) -> None:
    path = shared(relative)
    (rank,) = tracekit.analyze(path).ranks
    ours = (rank.buckets["host"] + rank.buckets["idle"]) / rank.window_ns
    assert ours == pytest.approx(_device_idle_independently(path), abs=0.01)


def test_nccl_kernels_land_in_collective() -> None:
    trace = tracekit.load(shared("hta_v100_allreduce/rank-1.json.gz"))
    rank = trace.ranks[0]
    family = classify_events(rank.events, trace.names)
    kernels = rank.events.kind == Kind.KERNEL
    nccl = [
        i
        for i in range(len(rank.events))
        if kernels[i]
        and trace.names[int(rank.events.name_id[i])].startswith("ncclKernel_AllReduce")
    ]
    assert len(nccl) == 2020
    assert {FAMILY_BUCKET[FAMILIES[family[i]]] for i in nccl} == {"collective"}
    result = tracekit.analyze(shared("hta_v100_allreduce/rank-1.json.gz"))
    assert result.ranks[0].families["all_reduce"] > 0
    assert result.ranks[0].buckets["collective"] > 0


def test_cuda_graph_replay_keeps_device_busy() -> None:
    (rank,) = tracekit.analyze(shared("vllm_mi300x_decode_cudagraph/graph_execution.json.gz")).ranks
    busy = 1 - (rank.buckets["host"] + rank.buckets["idle"]) / rank.window_ns
    assert busy > 0.98
    assert rank.graph_kernels > 400
    # MoE expert GEMMs dominate this decode step
    assert max(rank.families, key=rank.families.__getitem__) == "moe_gemm"


def test_cpu_only_trace() -> None:
    analysis = tracekit.analyze(shared("hta_cpu_only/rank-34.pt.trace.json.gz"))
    (rank,) = analysis.ranks
    assert (analysis.device, rank.device, rank.rank) == ("cpu", "cpu", 34)
    assert "1 of 300 ranks" in analysis.warnings[0]


def test_two_rank_pair_identities_and_exposed_collectives() -> None:
    analysis = tracekit.analyze(shared("hta_2rank"))
    assert [r.rank for r in analysis.ranks] == [0, 1]
    assert all(r.identity.source == "distributedInfo" for r in analysis.ranks)


def test_relative_timestamps_are_aligned_on_base_time() -> None:
    (rank,) = tracekit.analyze(shared("hta_nccl_relative_ts/rank-0.json.gz")).ranks
    assert rank.clock == "baseTimeNanoseconds"
    # 2024-05-22 (the trace's own INFO log lines), in absolute ns since the epoch
    day = 86_400 * 10**9
    assert 1_716_336_000_000_000_000 < rank.window_start_ns < 1_716_336_000_000_000_000 + 2 * day


def test_shared_folder_is_where_ci_expects_it() -> None:
    if not SHARED_TRACES.exists():
        pytest.skip("../shared/traces is absent here")
    assert (SHARED_TRACES / "MANIFEST.md").exists()
