"""One window per run: every rank is analysed over the span in which all were profiled
(exact µs on tiny traces built in code; the pooled path equals the sequential one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tracekit
from analyzers.engine.driver import analyze, analyze_trace
from analyzers.read.loader import load
from analyzers.run.window import common_window
from tests.builders import cpu_op, kernel, write_trace
from tests.test_kv_stall import make_run
from tracekit.core.analysis import Analysis, PipelineStage, to_json

US = 1_000
MM, SEND, RECV = "aten::mm", "_C::shm_send_tensor_list", "_C::shm_recv_tensor_list"


def _buckets(analysis: Analysis) -> list[dict[str, int]]:
    return [{k: v // US for k, v in r.buckets.items() if v} for r in analysis.ranks]


def _pp_run(tmp_path: Path, stage1: list[dict[str, Any]]) -> Path:
    """Stage 0 profiled over 0..100 µs; stage 1 as given."""
    stage0 = [cpu_op(MM, 0, 40), cpu_op(SEND, 40, 10), cpu_op(MM, 50, 40), cpu_op(SEND, 90, 10)]
    traces = [
        ("dp0_pp0_tp0_rank0.pt.trace.json.gz", stage0, {"rank": 0, "pp": 0}),
        ("dp0_pp1_tp0_rank1.pt.trace.json.gz", stage1, {"rank": 1, "pp": 1}),
    ]
    return make_run(tmp_path, [], [], layout={"pp": 2}, traces=traces)


def _same_both_ways(run: Path) -> Analysis:
    """The pooled analysis (two workers) equals the loader's, byte for byte."""
    pooled = analyze(run, jobs=2)
    assert to_json(pooled) == to_json(analyze_trace(load(run, jobs=1)))
    assert to_json(analyze(run, jobs=1)) == to_json(pooled)
    return pooled


def test_common_window() -> None:
    assert common_window([(0, 100), (20, 170)]) == (20, 100)
    assert common_window([(0, 100), (100, 170)]) is None  # touching is not overlapping
    assert common_window([(0, 100)]) is None  # one rank: its own window


def test_ranks_are_analysed_over_the_common_window(tmp_path: Path) -> None:
    # stage 1 starts profiling 20 µs after stage 0 and stops 70 µs after it: its receive
    # wait after 100 µs is not a bubble of the pipeline, only of the profile
    stage1 = [cpu_op(RECV, 20, 40), cpu_op(MM, 60, 20), cpu_op(RECV, 80, 70), cpu_op(MM, 150, 20)]
    analysis = _same_both_ways(_pp_run(tmp_path, stage1))
    first, last = analysis.ranks
    assert [(r.window_start_ns, r.window_ns) for r in analysis.ranks] == [(20 * US, 80 * US)] * 2
    assert (first.own_window_start_ns, first.own_window_ns) == (0, 100 * US)
    assert (last.own_window_start_ns, last.own_window_ns) == (20 * US, 150 * US)
    assert _buckets(analysis) == [
        {"compute": 20 + 40, "bubble": 10 + 10},
        {"bubble": 40 + 20, "compute": 20},
    ]
    assert analysis.bubbles is not None
    assert analysis.bubbles.stages == [
        PipelineStage(0, 1, 80 * US, 20 * US, 0.25),
        PipelineStage(1, 1, 80 * US, 60 * US, 0.75),
    ]
    assert analysis.bubbles.fraction == 0.5  # over the own windows: 130 of 250 µs
    # op tables count the time inside the window: the last GEMM lies after it
    assert {o.name: (o.count, o.total_ns // US) for o in last.top_ops} == {
        RECV: (2, 40 + 20),
        MM: (1, 20),
    }
    (warning,) = [w for w in analysis.warnings if "different windows" in w]
    assert "common window (0.1 ms" in warning
    assert "rank 0 (dp0 pp0 tp0) 0.1 ms (0.0 ms before it, 0.0 ms after)" in warning
    assert "rank 1 (dp0 pp1 tp0) 0.1 ms (0.0 ms before it, 0.1 ms after)" in warning


def test_windows_within_five_percent_need_no_warning(tmp_path: Path) -> None:
    stage1 = [cpu_op(RECV, 2, 48), cpu_op(MM, 50, 50)]  # own window 2..100 µs: 2% shorter
    analysis = _same_both_ways(_pp_run(tmp_path, stage1))
    assert [r.window_ns for r in analysis.ranks] == [98 * US, 98 * US]
    assert not [w for w in analysis.warnings if "window" in w]


def test_windows_that_do_not_overlap_are_analysed_alone(tmp_path: Path) -> None:
    stage1 = [cpu_op(RECV, 200, 30), cpu_op(MM, 230, 20)]
    analysis = _same_both_ways(_pp_run(tmp_path, stage1))
    first, last = analysis.ranks
    assert (first.window_start_ns, first.window_ns) == (0, 100 * US)
    assert (last.window_start_ns, last.window_ns) == (200 * US, 50 * US)
    assert _buckets(analysis) == [{"compute": 80, "bubble": 20}, {"bubble": 30, "compute": 20}]
    (warning,) = [w for w in analysis.warnings if "overlap" in w]
    assert "no common window, each rank is analysed over its own" in warning
    assert "rank 1 (dp0 pp1 tp0) 0.2–0.2 ms" in warning


def test_gpu_ranks_clip_device_work_to_the_common_window(tmp_path: Path) -> None:
    gemm = "ampere_bf16_s16816gemm_bf16_128x128"
    ar = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL"
    r0 = [kernel(gemm, 0, 100), kernel(ar, 100, 20, stream=20)]  # own window 0..120
    r1 = [kernel(gemm, 30, 60), kernel(ar, 90, 30, stream=20), kernel(gemm, 120, 80)]
    write_trace(tmp_path / "rank-0.json.gz", r0, rank=0, world=2, base_ns=0)
    write_trace(tmp_path / "rank-1.json.gz", r1, rank=1, world=2, base_ns=0)
    analysis = _same_both_ways(tmp_path)
    assert [(r.window_start_ns, r.window_ns) for r in analysis.ranks] == [(30 * US, 90 * US)] * 2
    assert _buckets(analysis) == [
        {"compute": 70, "collective": 20},
        {"compute": 60, "collective": 30},
    ]
    first = analysis.ranks[0]
    assert {o.name: o.total_ns // US for o in first.top_ops} == {gemm: 70, ar: 20}


def test_a_single_rank_keeps_its_own_window(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.json.gz", [cpu_op(MM, 10, 40), cpu_op(SEND, 50, 10)])
    (rank,) = tracekit.analyze(path).ranks
    assert (rank.window_start_ns, rank.window_ns) == (10 * US, 50 * US)
    assert (rank.own_window_start_ns, rank.own_window_ns) == (10 * US, 50 * US)
