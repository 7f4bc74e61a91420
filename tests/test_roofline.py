"""Roofline: the cost model's exact figures, the spec table, and the compute vs HBM split it
makes on tiny traces built in code (GPU, and CPU with the peaks capture records; the probe
itself: tests/test_cpu_probe.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analyzers.engine.driver import analyze_trace
from analyzers.planning.step_cost import Shard, StepCost, step_cost
from analyzers.rank.step_annotations import StepRow
from analyzers.read.loader import load
from analyzers.read.run_facts import RunFacts
from tests.builders import annotation, cpu_op, kernel, runtime, shaped_op, write_trace
from tests.peak_records import cpu_probe, recorded
from tests.test_kv_stall import KV_CACHE, MM, MODEL, make_run, records, step_events
from tracekit.core import hardware, rundir
from tracekit.core.analysis import NAME_PRIOR, ROOFLINE, SHAPES
from tracekit.core.model_config import ModelConfig

US = 1_000
TINY = ModelConfig(
    layers=1, hidden=8, heads=2, kv_heads=1, head_dim=4, intermediate=16, vocab=32, dtype_bytes=2
)
LLAMA_8B = {
    "architecture": "LlamaForCausalLM",
    "layers": 32,
    "hidden_size": 4096,
    "heads": 32,
    "kv_heads": 8,
    "head_dim": 128,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "dtype": "bfloat16",
}
H100 = {"deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3"}]}


def step(n: int = 0, t: int = 0, m: int = 0, g: int = 0) -> StepRow:
    return StepRow(0, 1, n, t, m, g)


def test_decode_step_cost_by_hand() -> None:
    # attention weights (8·(2+2) + 2·8)·4 = 192, gated FFN 3·8·16 = 384; per token the
    # matmul activations 8·4 + (2·2 + 2·1)·4 + 3·16 = 104 elements; KV 2·1·4·2 = 16 B/token
    cost = step_cost(TINY, Shard(), step(m=2, g=2), context=10, kv_b=16)
    flops = 2 * 2 * (192 + 384) + 4 * 2 * 4 * 10 + 2 * 2 * 32 * 8  # linear, attention, head
    size = (192 + 384) * 2 + 2 * 104 * 2 + 16 * (2 + 10) + 32 * 8 * 2 + 2 * 32 * 4
    assert cost == StepCost(flops, size) == StepCost(3648, 2528)


def test_prefill_attention_is_causal_and_tp_shards() -> None:
    cost = step_cost(TINY, Shard(tp=2), step(n=2, t=8), context=0, kv_b=8)
    heads = 1  # 2 heads over TP=2; the one KV head is replicated
    attn_w = (8 * (heads + 2) + heads * 8) * 4
    act = 8 * 4 + (2 * heads + 2) * 4 + 3 * 8
    flops = 8 * 2 * (attn_w + 3 * 8 * 8) + 2 * heads * 4 * 8 * 8 / 2 + 2 * 2 * 32 * 8 / 2
    size = (attn_w + 192) * 2 + 8 * act * 2 + 8 * (8 + 8) + 32 * 8 / 2 * 2 + 2 * 32 / 2 * 4
    assert cost == StepCost(flops, size)


def test_moe_reads_only_touched_experts_and_pp_splits_like_vllm() -> None:
    moe = ModelConfig(**{**TINY.__dict__, "experts": 4, "experts_per_token": 2})
    one = step_cost(moe, Shard(), step(m=1, g=1), context=0, kv_b=0)
    many = step_cost(moe, Shard(), step(m=64, g=64), context=0, kv_b=0)
    expert = 3 * 8 * 16
    assert one.flops == 2 * (192 + 2 * expert + 8 * 4) + 2 * 32 * 8
    # one token touches k/E of the experts, 64 tokens nearly all of them
    assert many.bytes - one.bytes > 1.9 * expert * 2
    assert [Shard(pp=2, stage=s).layers(5) for s in (0, 1)] == [3, 2]
    assert [Shard(pp=4, stage=s).layers(6) for s in range(4)] == [1, 2, 2, 1]


def test_spec_table_matches_trace_device_names() -> None:
    names = {
        "NVIDIA H100 80GB HBM3": "H100 SXM",
        "NVIDIA H100 PCIe": "H100 PCIe",
        "NVIDIA H200": "H200 SXM",
        "NVIDIA A100-SXM4-80GB": "A100 80GB",
        "NVIDIA A100-PG509-200": "A100 40GB",
        "NVIDIA B200": "B200",
        "AMD Instinct MI300X": "MI300X",
    }
    for device, name in names.items():
        spec = hardware.gpu_spec(device)
        assert spec is not None and spec.name == name, device
        assert spec.flops > 1e14 and spec.bandwidth > 1e12 and spec.interconnect
    assert hardware.gpu_spec("NVIDIA GeForce GT 710") is None
    assert round(hardware.spec_by_name("H100").ridge, 1) == 295.2


def gpu_events() -> list[dict[str, Any]]:
    """A prefill step then a decode step; kernels run after their launches (async)."""
    return [
        annotation("execute_context_1(4096)_generation_0(0)", 0, 20),
        runtime("cudaLaunchKernel", 2, 3, corr=1),
        runtime("cudaLaunchKernel", 8, 3, corr=2),
        kernel("ampere_bf16_s16816gemm_relu_128x128", 100, 100, corr=1),
        kernel("paged_attention_v1_kernel", 200, 100, corr=2),
        annotation("execute_context_0(0)_generation_8(8)", 320, 20),
        runtime("cudaLaunchKernel", 322, 3, corr=3),
        runtime("cudaLaunchKernel", 328, 3, corr=4),
        kernel("ampere_bf16_s16816gemm_relu_128x128", 400, 5000, corr=3),
        kernel("paged_attention_v1_kernel", 5400, 5000, corr=4),
    ]


def gpu_run(root: Path, device: dict[str, Any]) -> Path:
    run = make_run(root, [], [], model=LLAMA_8B, hardware={"gpus": [{"name": "x"}]})
    trace = run / rundir.TRACES / "dp0_pp0_tp0_rank0.pt.trace.json.gz"
    write_trace(trace, gpu_events(), base_ns=0, extra=device)
    return run


def test_gpu_steps_split_by_roofline(tmp_path: Path) -> None:
    analysis = analyze_trace(load(gpu_run(tmp_path, H100)))
    rank = analysis.ranks[0]
    assert rank.window_ns == 10_300 * US
    assert {k: v // US for k, v in rank.buckets.items() if v} == {
        "compute": 200,  # the prefill step's GEMM *and* attention
        "hbm": 10_000,  # the decode step's GEMM and attention
        "host": 20,  # step 2's annotation while the device idles
        "idle": 80,
    }
    assert rank.compute_hbm_basis == ROOFLINE
    assert analysis.hardware is not None and analysis.hardware.name == "H100 SXM"
    roof = rank.roofline
    assert roof is not None
    kinds = {k.kind: k for k in roof.kinds}
    assert (kinds["prefill"].compute_steps, kinds["decode"].compute_steps) == (1, 0)
    assert (kinds["prefill"].time_ns, kinds["decode"].time_ns) == (200 * US, 10_000 * US)
    # 4096 prefill tokens in 200 µs would be far above peak: flagged, never printed as fact
    assert kinds["prefill"].flops_pct is None and kinds["prefill"].model_error
    decode = kinds["decode"]
    assert decode.model_error is None and decode.bandwidth_pct is not None
    assert decode.bandwidth_pct == round(100 * decode.bytes / 0.01 / 3.35e12, 3)
    ops = {(o.name[:20], o.bucket): o.total_ns for o in rank.top_ops}
    assert ops[("ampere_bf16_s16816ge", "compute")] == 100 * US
    assert ops[("ampere_bf16_s16816ge", "hbm")] == 5000 * US
    assert "roofline" in analysis.compute_hbm_basis and "H100 SXM" in analysis.compute_hbm_basis


def test_unknown_gpu_keeps_the_name_prior(tmp_path: Path) -> None:
    device = {"deviceProperties": [{"id": 0, "name": "NVIDIA GeForce GT 710"}]}
    analysis = analyze_trace(load(gpu_run(tmp_path, device)))
    rank = analysis.ranks[0]
    assert rank.compute_hbm_basis == NAME_PRIOR and rank.roofline is None
    assert (rank.buckets["compute"], rank.buckets["hbm"]) == (5100 * US, 5100 * US)
    assert any("no spec-table row" in w for w in analysis.warnings)
    assert "no roofline" in analysis.compute_hbm_basis


@pytest.mark.parametrize(
    ("ridge", "expected"),
    [
        (1.0, {"compute": 90}),  # decode of 2 tokens: ~2 FLOP/byte ≥ ridge 1
        (10.0, {"hbm": 90}),
    ],
)
def test_cpu_run_with_measured_peaks(
    tmp_path: Path, ridge: float, expected: dict[str, int]
) -> None:
    peaks = recorded(cpu_probe(1e10 * ridge, 1e10))  # as capture records them
    run = make_run(tmp_path, step_events(), records(), model=MODEL, kv_cache=KV_CACHE, peaks=peaks)
    rank = analyze_trace(load(run)).ranks[0]
    assert rank.compute_hbm_basis == ROOFLINE
    work = {k: rank.buckets[k] // US for k in ("compute", "hbm", "kv_stall") if rank.buckets[k]}
    # 150 µs of work, 60 of it recompute; kv_stall adds 50 µs waiting for KV blocks
    assert work == {**expected, "kv_stall": 110}


# --- per op call, from recorded shapes ---------------------------------------------------

BF = "c10::BFloat16"
SQUARE = [[4096, 4096], [4096, 4096]]  # 2·4096³ FLOPs over 3·4096²·2 bytes: 1365 FLOP/byte


def shapes_gpu_events(prefill_us: float = 200) -> list[dict[str, Any]]:
    """Three shaped host ops each launching one kernel, and a kernel launched outside them."""
    return [
        shaped_op("aten::mm", 0, 10, [[1, 4096], [4096, 4096]], [BF, BF]),  # GEMV: ~1 FLOP/B
        runtime("cudaLaunchKernel", 2, 3, corr=1),
        shaped_op("aten::mm", 20, 10, SQUARE, [BF, BF]),
        runtime("cudaLaunchKernel", 22, 3, corr=2),
        shaped_op("aten::add", 40, 10, [*SQUARE, []], [BF, BF, "Scalar"]),
        runtime("cudaLaunchKernel", 42, 3, corr=3),
        runtime("cudaLaunchKernel", 60, 3, corr=4),
        kernel("ampere_bf16_s16816gemm_relu_128x128", 100, 50, corr=1),
        kernel("ampere_bf16_s16816gemm_relu_128x128", 150, prefill_us, corr=2),
        kernel("vectorized_elementwise_kernel", 150 + prefill_us, 100, corr=3),
        kernel("ampere_bf16_s16816gemm_relu_128x128", 250 + prefill_us, 50, corr=4),
    ]


def test_gpu_ops_split_by_their_own_shapes(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.json.gz", shapes_gpu_events(), extra=H100)
    analysis = analyze_trace(load(path))  # check_state after every stage: the invariant
    rank = analysis.ranks[0]
    assert rank.window_ns == 400 * US
    # the GEMV's kernel is HBM-bound by its shapes (the name rules said compute); the
    # kernel launched outside any shaped op keeps the name rules
    assert {k: v // US for k, v in rank.buckets.items() if v} == {"compute": 250, "hbm": 150}
    assert rank.compute_hbm_basis == SHAPES
    roof = rank.roofline
    assert roof is not None and roof.kinds == [] and roof.ops_decided_ns == 350 * US
    ops = {k.kind: k for k in roof.ops}
    gemm, elementwise = ops["gemm"], ops["elementwise"]
    assert (gemm.ops, gemm.compute_ops, gemm.time_ns) == (2, 1, 250 * US)
    assert gemm.flops == 2 * 4096**3 + 2 * 4096**2
    assert gemm.bytes == 3 * 4096**2 * 2 + (4096 + 4096**2 + 4096) * 2
    assert gemm.flops_pct == round(100 * gemm.flops / 250e-6 / 989e12, 3)
    assert gemm.bandwidth_pct == round(100 * gemm.bytes / 250e-6 / 3.35e12, 3)
    assert (elementwise.flops, elementwise.bytes) == (4096**2, 3 * 4096**2 * 2)
    assert elementwise.model_error is None and gemm.source == "trace shapes"
    listed = {(o.name[:14], o.bucket): o.total_ns // US for o in rank.top_ops}
    assert listed[("ampere_bf16_s1", "hbm")] == 50 and listed[("ampere_bf16_s1", "compute")] == 250


def test_ops_above_peak_are_flagged_not_printed(tmp_path: Path) -> None:
    # 2·4096³ FLOPs in 10 µs is 13.7 PFLOP/s: above the H100's 989 TFLOP/s
    path = write_trace(tmp_path / "t.json.gz", shapes_gpu_events(prefill_us=10), extra=H100)
    rank = analyze_trace(load(path)).ranks[0]
    assert rank.roofline is not None
    gemm = next(k for k in rank.roofline.ops if k.kind == "gemm")
    assert gemm.flops_pct is None and gemm.model_error and "model error" in gemm.model_error
    assert gemm.above_peak == 1 and gemm.bandwidth_pct is not None
    assert any("1 calls exceed a peak" in n for n in rank.roofline.notes)
    assert sum(rank.buckets.values()) == rank.window_ns


def test_cpu_ops_split_by_their_shapes(tmp_path: Path) -> None:
    # a CPU rank: each call tree's outermost costed op decides its span; nested ops go with it
    cpu = hardware.DeviceSpec(name="CPU t", flops=1e12, bandwidth=1e11, source="test")  # ridge 10
    events = [
        shaped_op("aten::linear", 0, 100, [[64, 512], [512, 512]], [BF, BF]),  # 51 FLOP/B
        shaped_op("aten::mm", 10, 80, [[64, 512], [512, 64]], [BF, BF]),  # nested: not counted
        shaped_op("aten::mul", 100, 50, [[64, 512], [64, 512]], [BF, BF]),  # 0.17 FLOP/B
        shaped_op("_C::onednn_mm", 150, 40, [[1, 512], [1, 512], [], []], [BF, BF, "", "long int"]),
        cpu_op("aten::add", 190, 10),  # no shapes: the name rules (hbm)
    ]
    trace = load(write_trace(tmp_path / "t.json.gz", events))
    rank = analyze_trace(trace, facts=RunFacts(spec=cpu)).ranks[0]
    assert rank.window_ns == 200 * US
    assert {k: v // US for k, v in rank.buckets.items() if v} == {"compute": 100, "hbm": 100}
    assert rank.roofline is not None and rank.roofline.ops_decided_ns == 190 * US
    ops = {k.kind: k for k in rank.roofline.ops}
    assert (ops["gemm"].ops, ops["gemm"].compute_ops, ops["gemm"].time_ns) == (2, 1, 140 * US)
    assert ops["gemm"].flops == 2 * 64 * 512 * 512 + 2 * 512 * 512
    assert (ops["elementwise"].ops, ops["elementwise"].time_ns) == (1, 50 * US)
    assert rank.compute_hbm_basis == SHAPES


def test_shapes_take_precedence_over_the_step_model(tmp_path: Path) -> None:
    # ridge 1: the step model calls both steps compute-bound; step A's GEMM was recorded
    # with shapes: a 1-token GEMV, 2·256·256 FLOPs over (256 + 256² + 256) · 2 bytes, 0.99
    events = step_events()
    events[1] = shaped_op(MM, 10, 40, [[1, 256], [1, 256], [], []], [BF, BF, "", "long int"])
    peaks = recorded(cpu_probe(1e10, 1e10))
    run = make_run(tmp_path, events, records(), model=MODEL, kv_cache=KV_CACHE, peaks=peaks)
    rank = analyze_trace(load(run)).ranks[0]
    work = {k: rank.buckets[k] // US for k in ("compute", "hbm", "kv_stall") if rank.buckets[k]}
    assert work == {"compute": 50, "hbm": 40, "kv_stall": 110}
    assert rank.compute_hbm_basis == ROOFLINE and rank.roofline is not None
    assert [(k.kind, k.ops, k.compute_ops) for k in rank.roofline.ops] == [("gemm", 1, 0)]
    assert rank.roofline.ops_decided_ns == 40 * US
