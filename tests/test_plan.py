"""``tracekit plan``: the paper's four findings, exact memory figures, the JSON output, model
inputs (presets, HF config.json) and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
from click.testing import CliRunner

from analyzers.planning import presets
from analyzers.planning.plan import (
    layouts,
    plan,
    predict,
    weight_bytes,
)
from analyzers.planning.step_cost import Shard, kv_bytes_per_token
from tests.conftest import REPO
from tracekit.cli_plan import plan_command
from tracekit.core.errors import TracekitError
from tracekit.core.hardware import spec_by_name
from tracekit.core.layout import Layout
from tracekit.core.plan_result import (
    PLAN_SCHEMA_VERSION,
    Costs,
    LayoutPlan,
    Plan,
    from_json,
    json_schema,
)

H100, H200 = spec_by_name("H100"), spec_by_name("H200")


def make(model: str, gpu: str, workload: str, gpus: int = 8) -> Plan:
    return plan(presets.model(model), spec_by_name(gpu), gpus, presets.workload(workload))


def row(p: Plan, dp: int, tp: int, pp: int, ep: bool = False) -> LayoutPlan:
    return next(r for r in p.layouts if r.layout == Layout.of(dp, tp, pp, ep))


def rank(p: Plan, dp: int, tp: int, pp: int, ep: bool = False) -> int:
    feasible = [r.layout for r in p.layouts if r.feasible]
    return feasible.index(Layout.of(dp, tp, pp, ep)) + 1


# --- the paper's four findings ---------------------------------------------------------------


def per_gpu_seqs(r: LayoutPlan) -> float:
    """Sequences one GPU's KV cache holds in this layout (a replica's over its GPUs)."""
    return r.max_seqs / (r.layout.tp * r.layout.pp)


def test_finding1_8b_dp_is_throughput_efficient_under_chat() -> None:
    # the paper: data parallelism is throughput-efficient for small models; 8B on 8×H100
    # under chat: one replica per GPU ranks first, its batch set by the scheduler
    # (max_num_seqs), not by the KV cache, and it is HBM-bound (decode)
    p = make("Llama-3.1-8B", "H100", "chat")
    assert p.best is not None and p.best.layout == Layout(8, 1, 1)
    assert p.best.regime == "hbm-bound" and p.best.batch == 256 < p.best.max_seqs
    assert p.best.per_device > 1.15 * p.layouts[1].per_device


def test_finding1_8b_dp_falls_into_the_capacity_trap_under_reasoning() -> None:
    # the paper: on reasoning workloads (1k in / 16k out) KV pressure throttles each DP
    # replica's batch (the capacity trap) and TP unlocks the stranded memory: DP8 is
    # capacity-bound at 43 sequences, and a TP layout ahead of it holds more per GPU
    p = make("Llama-3.1-8B", "H100", "reasoning")
    dp8 = row(p, 8, 1, 1)
    assert (dp8.max_seqs, dp8.batch, dp8.regime) == (43, 43, "capacity-bound")
    assert p.best is not None and p.best.layout.tp > 1 and rank(p, 8, 1, 1) > 1
    assert per_gpu_seqs(p.best) > per_gpu_seqs(dp8)
    ahead = [r for r in p.layouts if r.feasible and r.rank is not None and r.rank < dp8.rank]
    assert ahead and all(r.layout.tp > 1 or r.layout.pp > 1 for r in ahead)
    # the trap costs throughput, but modestly (the paper: DP stays competitive)
    assert dp8.per_device > 0.85 * p.best.per_device


def test_finding1_32b_is_past_the_crossover_even_under_chat() -> None:
    # near 32B one replica per GPU leaves almost no KV cache: DP8 is capacity-bound already
    # under chat (9 sequences) and a TP=2 layout leads; under reasoning it holds 1
    chat, reasoning = make("Qwen2.5-32B", "H100", "chat"), make("Qwen2.5-32B", "H100", "reasoning")
    assert row(chat, 8, 1, 1).regime == "capacity-bound" and row(chat, 8, 1, 1).max_seqs == 9
    assert chat.best is not None and chat.best.layout == Layout(4, 2, 1)
    assert row(reasoning, 8, 1, 1).batch == 1
    assert reasoning.best is not None and reasoning.best.layout.tp > 1
    assert per_gpu_seqs(reasoning.best) > 20 * per_gpu_seqs(row(reasoning, 8, 1, 1))


@pytest.mark.parametrize("workload", ["chat", "reasoning"])
def test_finding1_405b_has_no_data_parallel_option(workload: str) -> None:
    # one FP8 405B replica needs all 8 H100s: no layout with DP > 1 fits
    p = make("Llama-3.1-405B-FP8", "H100", workload)
    assert all(not r.feasible for r in p.layouts if r.layout.dp > 1)
    assert p.best is not None and p.best.layout == Layout(1, 8, 1)


def test_finding1_deepseek_r1_trap_without_tp_relief() -> None:
    # DeepSeek-R1 (MoE, MLA): DP attention with EP8 is first under chat and reasoning; under
    # reasoning it is capacity-bound (35 sequences per replica), but TP cannot unlock memory
    # here: MLA's latent KV is held whole on every TP rank, so no TP layout holds more per GPU
    chat, reasoning = make("DeepSeek-R1", "H200", "chat"), make("DeepSeek-R1", "H200", "reasoning")
    dp8 = Layout.of(8, 1, 1, experts=True)
    assert chat.best is not None and chat.best.layout == dp8
    assert reasoning.best is not None and reasoning.best.layout == dp8
    trapped = row(reasoning, 8, 1, 1, ep=True)
    assert (trapped.batch, trapped.regime) == (35, "capacity-bound")
    tp = [r for r in reasoning.layouts if r.feasible and r.layout.tp > 1 and r.layout.pp == 1]
    assert tp and all(per_gpu_seqs(r) <= per_gpu_seqs(trapped) for r in tp)


def test_finding2_near_32b_one_replica_per_gpu_is_capacity_bound_tp2_wins() -> None:
    p = make("Qwen2.5-32B", "H100", "reasoning")
    dp8, tp2 = row(p, 8, 1, 1), row(p, 4, 2, 1)
    assert dp8.feasible and dp8.max_seqs == 1 and dp8.regime == "capacity-bound"
    assert dp8.weights_gb == pytest.approx(65.53, abs=0.01)
    assert tp2.max_seqs == 30 and tp2.per_device > 10 * dp8.per_device
    assert rank(p, 4, 2, 1) < rank(p, 8, 1, 1)
    # every layout with fewer GPUs per replica than TP=2 is below it
    assert all(r.per_device < tp2.per_device for r in p.layouts if r.layout.tp * r.layout.pp == 1)


@pytest.mark.parametrize("workload", ["chat", "reasoning"])
def test_finding3_405b_needs_high_degree_tp(workload: str) -> None:
    p = make("Llama-3.1-405B-FP8", "H100", workload)
    assert p.best is not None and p.best.layout == Layout(1, 8, 1)
    feasible = [r.layout for r in p.layouts if r.feasible]
    assert all(lay.dp == 1 for lay in feasible)  # only one 8-GPU replica fits
    bad = [r for r in p.layouts if not r.feasible]
    assert {r.layout.tp * r.layout.pp for r in bad} == {1, 2, 4}
    assert all("exceed the 72 GB usable" in r.reason for r in bad)
    if workload == "chat":
        assert p.best.regime in ("interconnect-bound", "hbm-bound")
        assert set(list(p.best.scores)[:2]) >= {"interconnect-bound"}
    # BF16 405B (810 GB) fits no layout of 8×80 GB
    bf16 = make("Llama-3.1-405B", "H100", workload)
    assert bf16.best is None and not any(r.feasible for r in bf16.layouts)


def test_finding4_deepseek_r1_favours_hybrid_ep_and_is_routing_bound() -> None:
    p = make("DeepSeek-R1", "H200", "chat")
    assert p.best is not None and p.best.layout == Layout.of(8, 1, 1, experts=True)
    assert p.best.regime == "routing-bound"
    no_ep = [r for r in p.layouts if r.feasible and not r.layout.experts]
    assert no_ep and all(r.per_device < p.best.per_device / 2 for r in no_ep)
    # without EP, more than one replica does not fit; MLA's latent KV is on every TP rank
    assert all(not r.feasible for r in p.layouts if r.layout.dp > 1 and not r.layout.experts)
    assert row(p, 1, 8, 1).max_seqs < row(p, 8, 1, 1, ep=True).max_seqs * 8


# --- exact figures and invariants ------------------------------------------------------------


def test_memory_figures_by_hand() -> None:
    m = presets.PRESETS["Llama-3.1-8B"].config
    per_layer = 4096 * 128 * (32 + 2 * 8) + 32 * 128 * 4096 + 3 * 4096 * 14336
    params = 32 * per_layer + 2 * 128256 * 4096  # embedding + LM head (untied)
    assert weight_bytes(m, Shard()) == 2 * params == 16_059_990_016
    assert kv_bytes_per_token(m, Shard()) == 2 * 32 * 8 * 128 * 2 == 131_072
    assert kv_bytes_per_token(m, Shard(tp=2)) == 65_536
    r1 = presets.PRESETS["DeepSeek-R1"].config
    assert kv_bytes_per_token(r1, Shard(tp=8), 2) == 61 * 576 * 2  # MLA: not split by TP
    total = weight_bytes(r1, Shard())
    assert 6.7e11 < total < 6.9e11  # 671B parameters, FP8 (+ embedding, head)


def test_buckets_sum_to_the_round_and_layouts_cover_n() -> None:
    assert len(layouts(8, moe=False)) == 10
    assert len(layouts(8, moe=True)) == 19  # each with DP×TP > 1 also with EP
    for p in (make("Llama-3.1-8B", "H100", "reasoning"), make("DeepSeek-R1", "H200", "chat")):
        for r in p.layouts:
            if r.feasible:
                assert sum(r.shares.values()) == pytest.approx(1.0)
                per_device = r.batch / (r.round_ms / 1e3) / (r.layout.tp * r.layout.pp)
                assert r.per_device == pytest.approx(per_device)


def test_calibrated_costs_enter_the_round() -> None:
    """Host overhead per step, the engine core's scheduling (serial at PP = 1, overlapped by
    the batch queue at PP > 1), model-parallel efficiency and a fixed KV cache."""
    spec, work = presets.model("Llama-3.1-8B"), presets.workload("2048:256:64")
    base = {lay: predict(spec, H100, lay, work) for lay in (Layout(1, 1, 1), Layout(1, 1, 2))}
    host = Costs(step_overhead=1e-3)
    for lay, r in base.items():  # 1 ms on every stage's step: the round grows by PP ms
        got = predict(spec, H100, lay, work, host)
        assert got.round_ms == pytest.approx(r.round_ms + lay.pp * 1.0)
        assert got.shares["host"] * got.round_ms == pytest.approx(lay.pp * 1.0)
        assert sum(got.shares.values()) == pytest.approx(1.0)
    sched = Costs(schedule_overhead=1e-3)
    single = predict(spec, H100, Layout(1, 1, 1), work, sched)
    assert single.round_ms == pytest.approx(base[Layout(1, 1, 1)].round_ms + 1.0)
    piped = predict(spec, H100, Layout(1, 1, 2), work, sched)  # once per round, not per stage
    assert piped.round_ms == pytest.approx(base[Layout(1, 1, 2)].round_ms + 1.0)
    big = predict(spec, H100, Layout(1, 1, 2), work, Costs(schedule_overhead=0.1))
    assert big.round_ms == pytest.approx(2 * 100.0)  # the engine core is the bottleneck
    assert sum(big.shares.values()) == pytest.approx(1.0)
    ipc = Costs(multiprocess_overhead=1e-3)  # only replicas of several ranks pay it
    assert predict(spec, H100, Layout(1, 1, 1), work, ipc) == base[Layout(1, 1, 1)]
    piped = predict(spec, H100, Layout(1, 1, 2), work, ipc)
    assert piped.round_ms == pytest.approx(base[Layout(1, 1, 2)].round_ms + 1.0)
    half = Costs(model_parallel_efficiency=0.5)
    assert predict(spec, H100, Layout(1, 1, 1), work, half) == base[Layout(1, 1, 1)]
    assert (
        predict(spec, H100, Layout(1, 1, 2), work, half).round_ms > base[Layout(1, 1, 2)].round_ms
    )
    fixed = predict(spec, H100, Layout(1, 1, 1), work, Costs(kv_cache_bytes=10e9))
    assert fixed.kv_gb == pytest.approx(10.0) and fixed.max_seqs == int(10e9 / 131072 / 2176)
    too_big = predict(spec, H100, Layout(1, 1, 1), work, Costs(kv_cache_bytes=70e9))
    assert not too_big.feasible and "+ KV cache 70.0 GB per device exceed" in too_big.reason


def test_workloads_and_concurrency_limit_the_batch() -> None:
    assert presets.workload("reasoning") == presets.Workload("reasoning", 1024, 16384)
    assert presets.workload("chat").mean_context == 1280
    w = presets.workload("2048:256:64")
    assert (w.prompt, w.output, w.concurrency) == (2048, 256, 64)
    p = make("Llama-3.1-8B", "H100", "2048:256:64")
    assert row(p, 8, 1, 1).batch == 8 and row(p, 1, 8, 1).batch == 64


# --- model inputs ----------------------------------------------------------------------------

LLAMA_8B_HF: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "torch_dtype": "bfloat16",
}
DEEPSEEK_R1_HF: dict[str, Any] = {
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_attention_heads": 128,
    "num_hidden_layers": 61,
    "num_key_value_heads": 128,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "q_lora_rank": 1536,
    "kv_lora_rank": 512,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "vocab_size": 129280,
    "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3"},
}


def test_hf_configs_give_the_presets_figures(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA_8B_HF))
    assert presets.model(str(path)).config == presets.PRESETS["Llama-3.1-8B"].config
    assert presets.model(str(tmp_path)).config == presets.PRESETS["Llama-3.1-8B"].config
    r1 = presets.from_hf(DEEPSEEK_R1_HF, path)
    assert r1 == presets.PRESETS["DeepSeek-R1"].config


def cli() -> click.Group:
    @click.group()
    @click.option("-v", "--verbose", count=True)
    def main(verbose: int) -> None:
        pass

    main.add_command(plan_command)
    return main


def test_cli_json_and_config_path(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA_8B_HF))
    args = ["plan", "--model", str(path), "--gpu", "H100", "--gpus", "8", "--workload", "chat"]
    result = CliRunner().invoke(cli(), [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema_version"] == PLAN_SCHEMA_VERSION == 3
    assert data["gpus"] == 8 and data["gpu"] == "H100 SXM"
    assert data["best"] == "DP=8" and data["mean_context"] == 1280
    first = data["layouts"][0]
    assert first["rank"] == 1 and first["label"] == "DP=8"
    assert first["layout"] == {"dp": 8, "tp": 1, "pp": 1, "ep": 1}
    back = from_json(result.output.encode(), "plan.json")  # typed, validated on read
    assert back.layouts[0].layout == Layout(8, 1, 1) and back.best == "DP=8"
    with pytest.raises(TracekitError, match="plan schema_version 2; this tracekit reads version 3"):
        from_json(result.output.replace('"schema_version": 3', '"schema_version": 2').encode())
    schema = json.loads((REPO / "tracekit" / "schema" / "plan.schema.json").read_text())
    assert schema == json_schema(), "regenerate with: python -m tracekit.core.plan_result"
    jsonschema.validate(data, schema)
    keys = {"weights_gb", "activations_gb", "kv_gb", "max_seqs", "batch", "round_ms"}
    assert keys | {"tokens_per_s", "per_device", "shares", "regime", "scores"} <= set(first)
    text = CliRunner().invoke(cli(), args)
    assert text.exit_code == 0 and "best per device: DP=8" in text.output


def test_cli_lists_infeasible_layouts_with_the_reason() -> None:
    args = ["plan", "--model", "llama-3.1-405b-fp8", "--gpu", "H100", "--gpus", "8"]
    result = CliRunner().invoke(cli(), [*args, "--json"])
    assert result.exit_code == 0, result.output
    bad = [r for r in json.loads(result.output)["layouts"] if not r["feasible"]]
    assert len(bad) == 6 and all(r["rank"] is None and "exceed" in r["reason"] for r in bad)
    text = CliRunner().invoke(cli(), args).output
    assert "infeasible DP=8: weights 410.1 GB" in text  # FP8 layers + 16-bit embedding, head


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (
            ["--model", "Llama-9B"],
            None,
            "no model preset, config file or Hugging Face id 'Llama-9B'",
        ),
        (
            ["--model", "org/absent-model"],
            None,
            "has no config.json in the local Hugging Face cache",
        ),
        (["--slo", "ttft=fast"], None, "bad --slo 'ttft=fast'"),
        (["--gpu-spec", "/nonexistent/gpu.json", "--gpu", ""], None, "unreadable GPU spec"),
        (["--gpu", "V100"], None, "no device named 'V100'"),
        (["--workload", "long"], None, "bad workload 'long'"),
        (["--workload", "10:0"], None, "bad workload '10:0'"),
        ([], "{not json", "unreadable config.json"),
        ([], "[1, 2]", "config.json is not a JSON object"),
        ([], '{"hidden_size": 4096}', "config.json lacks a positive integer num_attention_heads"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    content: str | None,
    message: str,
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    options = {"--model": "Llama-3.1-8B", "--gpu": "H100", "--gpus": "8"}
    if content is not None:
        (tmp_path / "config.json").write_text(content)
        options["--model"] = str(tmp_path / "config.json")
    for key, value in zip(args[::2], args[1::2], strict=True):
        options[key] = value
    result = CliRunner().invoke(cli(), ["plan", *[x for kv in options.items() for x in kv]])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tracekit: error: ") and message in lines[0]
