"""``tracekit plan`` precisions: ``--dtype`` / ``--kv-dtype``, their defaults from a HF config,
and what FP8 does to memory, KV capacity and throughput, checked against hand computation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from analyzers.planning import presets, quantization
from analyzers.planning.plan import plan
from tests.test_plan import LLAMA_8B_HF, cli
from tracekit.core.hardware import GIB, spec_by_name
from tracekit.core.layout import Layout
from tracekit.core.plan_result import LayoutPlan, Plan
from tracekit.core.precision import compute_precision

H100, A100 = spec_by_name("H100"), spec_by_name("A100")
LLAMA_8B = presets.PRESETS["Llama-3.1-8B"]

# Llama-3.1-8B by hand: per layer q,k,v,o (32 heads, 8 KV heads, dim 128) + gated FFN
ATTN = 4096 * 128 * (32 + 2 * 8) + 32 * 128 * 4096
FFN = 3 * 4096 * 14336
HEAD = 128256 * 4096  # the LM head (the embedding is as large)
LAYERS = 32
ACT = 4096 * 4 + (2 * 32 + 2 * 8) * 128 + 3 * 14336  # activation values per token and layer
ACTIVATIONS = 8192 * (4 * 4096 + 2 * 14336) * 2 + 2 * GIB  # vLLM's prefill budget + runtime
USABLE = 0.9 * 80e9


def one_gpu(spec: Any, work: str) -> LayoutPlan:
    p = plan(spec, H100, 1, presets.workload(work))
    return next(r for r in p.layouts if r.layout == Layout(1, 1, 1))


def test_fp8_memory_and_kv_capacity_by_hand() -> None:
    bf16 = one_gpu(LLAMA_8B, "chat")
    fp8 = one_gpu(quantization.with_precision(LLAMA_8B, "fp8", "fp8"), "chat")
    w16 = (LAYERS * (ATTN + FFN) + 2 * HEAD) * 2
    w8 = LAYERS * (ATTN + FFN) * 1 + 2 * HEAD * 2  # linear layers FP8; embedding, head 16-bit
    assert bf16.weights_gb * 1e9 == pytest.approx(w16) and w16 == 16_059_990_016
    assert fp8.weights_gb * 1e9 == pytest.approx(w8) and w8 == 9_080_668_160
    kv16, kv8 = USABLE - w16 - ACTIVATIONS, USABLE - w8 - ACTIVATIONS
    assert bf16.kv_gb * 1e9 == pytest.approx(kv16) and fp8.kv_gb * 1e9 == pytest.approx(kv8)
    per_token16, per_token8 = 2 * LAYERS * 8 * 128 * 2, 2 * LAYERS * 8 * 128 * 1
    assert bf16.max_seqs == int(kv16 / per_token16 / 1280) == 316
    assert fp8.max_seqs == int(kv8 / per_token8 / 1280) == 715
    # only the weights at FP8 (KV bf16): the freed weight memory alone
    w_only = one_gpu(quantization.with_precision(LLAMA_8B, "fp8"), "chat")
    assert w_only.max_seqs == int(kv8 / per_token16 / 1280)


def _hbm_seconds(wb: float, ab: float, kv_b: int, n: int, t: int, context: float) -> float:
    """One step's bytes over the H100's 3.35 TB/s (the step_cost formula, by hand)."""
    size = LAYERS * ((ATTN + FFN) * wb + n * ACT * ab) + kv_b * (n + t + context)
    size += HEAD * 2 + 1 * 128256 * 4  # LM head (16-bit) + one row of fp32 logits
    return size / 3.35e12


def test_fp8_throughput_by_hand_at_one_sequence() -> None:
    # 128 in / 128 out, one in flight: every step reads the weights (HBM-bound at both
    # precisions); a round is one decode step plus 1/128 of the prompt's prefill
    work = "128:128:1"
    for spec, wb, ab, kv_b in (
        (LLAMA_8B, 2, 2, 131072),
        (quantization.with_precision(LLAMA_8B, "fp8", "fp8"), 1, 1, 65536),
    ):
        got = one_gpu(spec, work)
        decode = _hbm_seconds(wb, ab, kv_b, 1, 0, 128 + 64)
        prefill = _hbm_seconds(wb, ab, kv_b, 128, 128, 0)
        assert got.round_ms / 1e3 == pytest.approx(decode + prefill / 128)
        assert got.per_device == pytest.approx(1 / (decode + prefill / 128))
        assert got.tpot_ms == got.round_ms and got.regime == "hbm-bound"
    fast, slow = (
        one_gpu(quantization.with_precision(LLAMA_8B, "fp8", "fp8"), work),
        one_gpu(LLAMA_8B, work),
    )
    assert 1.8 < fast.per_device / slow.per_device < 1.95  # the 16-bit LM head stays


def test_compute_peak_follows_the_precision() -> None:
    h100 = {"bf16": 989e12, "fp16": 989e12, "fp8": 1979e12, "int8": 1979e12}
    a100 = {"bf16": 312e12, "fp16": 312e12, "int8": 624e12}
    assert compute_precision("fp8", "bf16", h100) == "fp8"
    assert compute_precision("fp8", "bf16", a100) == "bf16"  # no FP8 tensor cores: weight-only
    assert compute_precision("int8", "fp16", a100) == "int8"
    assert compute_precision("int4", "fp16", h100) == "fp16"  # weight-only at the 16-bit rate
    fp8 = plan(quantization.with_precision(LLAMA_8B, "fp8"), H100, 8, presets.workload("chat"))
    assert fp8.compute == "fp8" and "1,979 TFLOP/s dense fp8" in fp8.notes[1]
    on_a100 = plan(quantization.with_precision(LLAMA_8B, "fp8"), A100, 8, presets.workload("chat"))
    assert on_a100.compute == "bf16" and "312 TFLOP/s dense bf16" in on_a100.notes[1]
    int4 = plan(quantization.with_precision(LLAMA_8B, "int4"), H100, 1, presets.workload("chat"))
    assert int4.compute == "bf16" and int4.layouts[0].weights_gb == pytest.approx(
        (LAYERS * (ATTN + FFN) * 0.5 + 2 * HEAD * 2) / 1e9
    )
    # prefill-heavy: compute-bound GEMMs run twice as fast at the FP8 peak
    long_prompt = presets.workload("8192:16:1")
    b16 = plan(LLAMA_8B, H100, 1, long_prompt).layouts[0]
    b8 = plan(quantization.with_precision(LLAMA_8B, "fp8"), H100, 1, long_prompt).layouts[0]
    assert b8.ttft_ms < 0.6 * b16.ttft_ms


QUANT: dict[str, tuple[dict[str, Any], str, str]] = {
    "hf-fp8": ({"quant_method": "fp8", "fmt": "e4m3"}, "fp8", "bf16"),
    "fbgemm": ({"quant_method": "fbgemm_fp8"}, "fp8", "bf16"),
    "awq": ({"quant_method": "awq", "bits": 4, "group_size": 128}, "int4", "fp16"),
    "gptq-8": ({"quant_method": "gptq", "bits": 8}, "int8", "fp16"),
    "ct-fp8": (
        {
            "quant_method": "compressed-tensors",
            "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}},
            "kv_cache_scheme": {"num_bits": 8, "type": "float"},
        },
        "fp8",
        "fp8",
    ),
    "ct-w4a16": (
        {
            "quant_method": "compressed-tensors",
            "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "int"}}},
        },
        "int4",
        "fp16",
    ),
}


@pytest.mark.parametrize("case", list(QUANT))
def test_defaults_from_quantization_config(tmp_path: Path, case: str) -> None:
    quant, weights, kv = QUANT[case]
    dtype = "float16" if kv == "fp16" or weights.startswith("int") else "bfloat16"
    data = {**LLAMA_8B_HF, "torch_dtype": dtype, "quantization_config": quant}
    (tmp_path / "config.json").write_text(json.dumps(data))
    spec = presets.model(str(tmp_path))
    assert (spec.weights, spec.kv) == (weights, kv if kv == "fp8" else spec.activation)
    assert spec.config.dtype_bytes == {"fp8": 1, "int8": 1, "int4": 0.5}[weights]


def test_cli_dtype_overrides_and_json(tmp_path: Path) -> None:
    args = ["plan", "--model", "Llama-3.1-8B", "--gpu", "H100", "--gpus", "1", "--json"]
    plain = json.loads(CliRunner().invoke(cli(), args).output)
    fp8 = json.loads(
        CliRunner().invoke(cli(), [*args, "--dtype", "fp8", "--kv-dtype", "fp8"]).output
    )
    assert (plain["weights"], plain["kv"], plain["compute"]) == ("bf16", "bf16", "bf16")
    assert (fp8["weights"], fp8["kv"], fp8["compute"]) == ("fp8", "fp8", "fp8")
    assert fp8["layouts"][0]["max_seqs"] > 2 * plain["layouts"][0]["max_seqs"]
    assert fp8["layouts"][0]["per_device"] > plain["layouts"][0]["per_device"]
    bad = CliRunner().invoke(cli(), [*args, "--dtype", "fp4"])
    assert bad.exit_code == 2 and "fp4" in bad.output


def test_plan_is_a_plan() -> None:  # the fp8 preset keeps its own precision name
    p: Plan = plan(presets.model("Llama-3.1-405B-FP8"), H100, 8, presets.workload("chat"))
    assert (p.weights, p.kv, p.compute) == ("fp8", "bf16", "fp8")
