"""Validation on the real public GPU traces in ../shared/traces (skipped where absent).

Every trace there is found, not listed (``tests.real_traces``): a trace added later is
covered with no code change. Each file alone and each top-level folder as a run must analyse
through the CLI with exit 0, its buckets summing exactly to its window; a rank file alone
must give the rank it is inside its folder's run.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

import tracekit
from analyzers.rank.classify import FAMILIES, classify_events
from analyzers.rank.rules import FAMILY_BUCKET
from tests.conftest import SHARED_TRACES, shared
from tests.real_traces import ABSENT, label, rank_files, run_folders, trace_files
from tracekit.cli import main
from tracekit.core.analysis import RankResult, from_json
from tracekit.core.trace_model import Kind

pytestmark = pytest.mark.shared_traces


def _params(paths: list[Path]) -> list[object]:
    if not paths:
        return [pytest.param(None, id="absent", marks=pytest.mark.skip(reason=ABSENT))]
    return [pytest.param(p, id=label(p)) for p in paths]


RUNS = trace_files() + run_folders()
MULTI_RANK = [f for f in run_folders() if len(rank_files(f)) > 1]


def test_discovery_finds_the_manifests_traces() -> None:
    """The traces the manifest lists outside capture folders are all found, and nothing
    from a capture folder is (execution_details.json is not a trace either)."""
    if not SHARED_TRACES.exists():
        pytest.skip(ABSENT)
    found = {label(p) for p in trace_files()}
    manifest = (SHARED_TRACES / "MANIFEST.md").read_text()
    listed = {
        row.split("`")[1]
        for row in manifest.splitlines()
        if row.startswith("| `") and "capture_traces" not in row.split("`")[1]
    }
    assert listed <= found
    assert not [f for f in found if "capture_traces" in f or f.endswith("details.json")]


@pytest.mark.parametrize("path", _params(RUNS))
def test_every_trace_and_run_analyses(path: Path) -> None:
    """Exit 0 through the CLI; the JSON passes the schema and every rank's buckets sum
    exactly to its window."""
    result = CliRunner().invoke(main, ["analyze", str(path), "--json"])
    assert result.exit_code == 0, result.stderr
    analysis = from_json(result.stdout.encode())  # schema + invariant checked on read
    assert analysis.ranks
    for rank in analysis.ranks:
        assert sum(rank.buckets.values()) == rank.window_ns, rank.label
        assert rank.window_ns > 0, rank.label


def _alone_over(path: Path, start_ns: int, window_ns: int) -> RankResult:
    """The rank in ``path`` analysed alone over a given window (the run's common one)."""
    from analyzers.engine.driver import settle_loaded
    from analyzers.engine.file_jobs import analyze_ranks
    from analyzers.engine.stage_log import FileStats

    trace = tracekit.load(path, jobs=1)
    (settled,) = settle_loaded(trace).files
    assert settled is not None
    settled = replace(settled, window=(start_ns, start_ns + window_ns))
    (out,) = analyze_ranks(settled, trace.ranks, trace.names, FileStats(path.name, 0, 0.0, 0))
    return out.digest.result


@pytest.mark.parametrize("folder", _params(MULTI_RANK))
def test_a_rank_file_alone_is_its_rank_in_the_run(folder: Path) -> None:
    """Per rank: the file analysed alone gives the buckets (and window) the rank has in the
    folder's analysis. Where the run clips its ranks to a common window, the file alone is
    analysed over that same window, and its own window is the one the run recorded."""
    run = {Path(r.path).resolve(): r for r in tracekit.analyze(folder).ranks}
    files = rank_files(folder)
    assert set(run) == {f.resolve() for f in files}
    for file in files:
        ranked = run[file.resolve()]
        (alone,) = tracekit.analyze(file).ranks
        own = (alone.window_start_ns, alone.window_ns)
        if ranked.own_window_start_ns is not None:
            assert (ranked.own_window_start_ns, ranked.own_window_ns) == own, file.name
        if (ranked.window_start_ns, ranked.window_ns) != own:
            alone = _alone_over(file, ranked.window_start_ns, ranked.window_ns)
        assert (alone.window_start_ns, alone.window_ns) == (
            ranked.window_start_ns,
            ranked.window_ns,
        ), file.name
        assert alone.buckets == ranked.buckets, file.name
        assert alone.families == ranked.families, file.name


# -- what the analysis says about particular traces ----------------------------------------

IDLE_CHECKED = [
    "hf_h100_qwen1.5_0.5b/trace.json.gz",
    "hta_nccl_relative_ts/rank-0.json.gz",
    "hta_v100_allreduce/rank-1.json.gz",
    "sglang_mi300x_qwen3_8b_decode/trace.json.gz",
    "vllm_mi300x_decode_cudagraph/graph_execution.json.gz",
]


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
    return float((hi - lo - busy) / (hi - lo))


@pytest.mark.parametrize("relative", IDLE_CHECKED)
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


def test_one_rank_of_a_pair_gives_bus_bandwidth_as_a_stated_lower_bound() -> None:
    """hta_2rank's rank 0 alone: its NCCL calls are seen on one rank only. Those whose
    communicator size is known count, timed by this rank, and the report says it is a
    lower bound; none is an error."""
    analysis = tracekit.analyze(shared("hta_2rank/rank-0.json.gz"))
    assert analysis.collectives is not None
    assert any(
        "seen on one rank only" in e and "lower bound" in e for e in analysis.collectives.evidence
    )


def test_rocm_string_ids_are_read() -> None:
    """ROCm 6.2's Kineto writes some ids as strings (``"stream": "0x0"``): read as numbers."""
    trace = tracekit.load(shared("hta_mi250_rocm/trace.json.gz"))
    (rank,) = trace.ranks
    assert rank.ignored == {}
    runtime = rank.events.kind == Kind.RUNTIME
    assert (rank.events.stream[runtime] == 0).any()  # "0x0"
    assert rank.events.kind.tolist().count(Kind.KERNEL) > 0


def test_relative_timestamps_are_aligned_on_base_time() -> None:
    (rank,) = tracekit.analyze(shared("hta_nccl_relative_ts/rank-0.json.gz")).ranks
    assert rank.clock == "baseTimeNanoseconds"
    # 2024-05-22 (the trace's own INFO log lines), in absolute ns since the epoch
    day = 86_400 * 10**9
    assert 1_716_336_000_000_000_000 < rank.window_start_ns < 1_716_336_000_000_000_000 + 2 * day


def test_shared_folder_is_where_ci_expects_it() -> None:
    if not SHARED_TRACES.exists():
        pytest.skip(ABSENT)
    assert (SHARED_TRACES / "MANIFEST.md").exists()
