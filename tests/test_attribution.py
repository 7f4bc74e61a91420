"""Exact buckets on tiny traces built in code (µs in the trace, ns in the result)."""

from __future__ import annotations

from pathlib import Path

import tracekit
from tests.builders import annotation, cpu_op, kernel, memcpy, runtime, write_trace
from tracekit.core.buckets import BUCKETS

US = 1_000


def _buckets(path: Path) -> dict[str, int]:
    (rank,) = tracekit.analyze(path).ranks
    return {k: v // US for k, v in rank.buckets.items() if v}


def test_exposed_collective_host_and_idle(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path / "t.json.gz",
        [
            cpu_op("aten::mm", -50, 40),  # before the device window: ignored
            kernel("ampere_bf16_s16816gemm_bf16_128x128", 0, 100, stream=7),
            kernel("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", 50, 100, stream=20),
            cpu_op("aten::add", 150, 30),  # device idle, host busy
            runtime("cudaStreamSynchronize", 180, 20, corr=9),  # a wait is not host work
            kernel("vectorized_elementwise_kernel<4, add>", 200, 10, stream=7),
        ],
        rank=0,
        base_ns=1_000_000_000,
    )
    (rank,) = tracekit.analyze(path).ranks
    assert rank.device == "gpu"
    assert rank.window_start_ns == 1_000_000_000
    assert rank.window_ns == 210 * US
    assert _buckets(path) == {"compute": 100, "collective": 50, "host": 30, "idle": 20, "hbm": 10}
    assert rank.overlapped == {"collective": 50 * US}
    assert set(rank.buckets) == set(BUCKETS)


def test_overlap_priority_across_streams(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path / "t.json.gz",
        [
            kernel("ncclDevKernel_SendRecv", 0, 100, stream=30),  # p2p: bubble
            kernel("ncclDevKernel_AllGather_RING", 20, 60, stream=20),  # hides the bubble
            kernel("paged_attention_v2_kernel", 40, 10, stream=7),  # hides both
            memcpy(90, 30, stream=8),
            kernel("topkGatingSoftmax", 150, 5, stream=7),
        ],
    )
    assert _buckets(path) == {
        "bubble": 30,
        "collective": 50,
        "hbm": 40,
        "moe_routing": 5,
        "idle": 30,
    }


def test_cuda_graph_replay_is_attributed_kernel_by_kernel(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path / "t.json.gz",
        [
            runtime("cudaGraphLaunch", 0, 5, corr=5),
            kernel("nvjet_tst_128x64_64x4", 10, 20, corr=5),
            kernel("flash_fwd_splitkv_kernel", 30, 20, corr=5),
            kernel("fused_moe_kernel", 50, 15, corr=5),
            kernel("moe_align_block_size_kernel", 65, 5, corr=5),
            kernel("cross_device_reduce_1stage<bf16>", 70, 10, corr=5),
        ],
    )
    result = tracekit.analyze(path)
    (rank,) = result.ranks
    assert rank.graph_kernels == 5
    assert _buckets(path) == {"compute": 35, "hbm": 20, "moe_routing": 5, "collective": 10}
    assert rank.families["moe_gemm"] == 15 * US
    assert "kernels replayed from CUDA/HIP graphs" in _render(result)


def _render(result: tracekit.core.analysis.Analysis) -> str:
    from tracekit.render.console import render

    return render(result)


def test_cpu_nested_ops_inherit_and_threads_overlap(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path / "t.json.gz",
        [
            annotation("execute_context_0(0)_generation_1(1)", 0, 170),
            cpu_op("aten::linear", 0, 100),
            cpu_op("aten::t", 0, 10),
            cpu_op("aten::addmm", 10, 80),
            cpu_op("vllm::unified_attention_with_output", 100, 50),
            cpu_op("aten::empty", 100, 5),
            cpu_op("mystery_op", 105, 35),  # no rule: inherits attention
            cpu_op("_C::shm_allreduce", 170, 30),
            cpu_op("unknown_top_level_op", 200, 10),  # no rule, no parent: unclassified
            # another thread: hidden under compute for 10..20, exposed over aten::t's overhead
            cpu_op("_C::shm_allreduce", 0, 20, tid=202),
        ],
    )
    result = tracekit.analyze(path)
    (rank,) = result.ranks
    assert rank.device == "cpu"
    assert rank.window_ns == 210 * US
    assert _buckets(path) == {"compute": 100, "host": 25, "hbm": 45, "collective": 40}
    assert rank.overlapped == {"collective": 10 * US}
    assert rank.families["unclassified"] == 10 * US
    assert [o.name for o in rank.unclassified] == ["unknown_top_level_op"]
    self_times = {o.name: o.total_ns // US for o in rank.top_ops}
    assert self_times["aten::addmm"] == 80
    assert self_times["aten::linear"] == 10
    assert self_times["mystery_op"] == 35  # listed under the family it inherited
    assert [(s.kind, s.dur_ns // US) for s in rank.steps] == [("decode", 170)]


def test_child_overrunning_parent_is_clipped(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path / "t.json.gz",
        [
            cpu_op("aten::linear", 0, 50),
            cpu_op("aten::add", 40, 30),  # ends after its parent: clipped to 50
            cpu_op("aten::mm", 60, 10),
        ],
    )
    assert _buckets(path) == {"compute": 50, "hbm": 10, "idle": 10}


def test_moe_topk_is_routing_outside_the_sampler(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path / "t.json.gz",
        [
            cpu_op("aten::topk", 0, 10),  # routing in the MoE layer
            cpu_op("_C::cpu_fused_moe", 10, 40),
            annotation("gpu_model_runner: sample", 60, 20),
            cpu_op("aten::topk", 65, 10),  # top-k sampling
        ],
    )
    (rank,) = tracekit.analyze(path).ranks
    assert rank.families["moe_routing"] == 10 * US
    assert rank.families["sampling"] == 10 * US
    assert rank.families["moe_gemm"] == 40 * US


def test_topk_without_moe_stays_sampling(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.json.gz", [cpu_op("aten::topk", 0, 10)])
    (rank,) = tracekit.analyze(path).ranks
    assert rank.families == {"sampling": 10 * US}


def test_run_time_compilation_owns_the_ops_traced_under_it(tmp_path: Path) -> None:
    # dynamo traces the model with fake tensors: the aten ops it records under its own
    # ranges are compilation (host), not model work; the real matmul after it is compute
    path = write_trace(
        tmp_path / "t.json.gz",
        [
            cpu_op("dynamo", 0, 100),
            cpu_op("bytecode_tracing (dynamo_timed)", 0, 60),
            cpu_op("PythonDispatchMode", 10, 40),
            cpu_op("aten::mm", 20, 20),
            cpu_op("aten::add", 60, 30),
            cpu_op("aten::mm", 100, 100),
        ],
    )
    result = tracekit.analyze(path)
    (rank,) = result.ranks
    assert _buckets(path) == {"host": 100, "compute": 100}
    assert rank.families["compile"] == 100 * US
    families = {o.name: o.family for o in rank.top_ops}
    assert families["PythonDispatchMode"] == families["aten::add"] == "compile"
    assert any("torch.compile ran inside the profiled window" in w for w in result.warnings)
