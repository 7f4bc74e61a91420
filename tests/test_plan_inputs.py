"""``tracekit plan`` inputs: a Hugging Face id from the local cache (offline), ``--gpu-spec``
files (a built-in GPU's numbers give its plan exactly), the added GPUs, several nodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzers.planning import presets, quantization
from analyzers.planning.plan import plan
from tests.test_plan import LLAMA_8B_HF, cli
from tracekit.core import plan_gpu
from tracekit.core.errors import TracekitError
from tracekit.core.hardware import GPU_NAMES, spec_by_name
from tracekit.core.layout import Layout

H100_FILE = {
    "name": "H100 SXM",
    "flops": {"bf16": 989e12, "fp16": 989e12, "fp8": 1979e12, "int8": 1979e12},
    "hbm_bandwidth": 3.35e12,
    "hbm_bytes": 80e9,
    "link_bandwidth": 450e9,
    "gpus_per_node": 8,
}


def _cache(root: Path, model_id: str, config: dict[str, object]) -> Path:
    folder = root / ("models--" + model_id.replace("/", "--"))
    snap = folder / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(config))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("abc123")
    return snap / "config.json"


@pytest.mark.parametrize("env", ["HF_HUB_CACHE", "HF_HOME"])
def test_hf_id_from_the_local_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    root = tmp_path / "hub"
    _cache(root, "meta-llama/Llama-3.1-8B-Instruct", LLAMA_8B_HF)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv(env, str(root if env == "HF_HUB_CACHE" else tmp_path))
    spec = presets.model("meta-llama/Llama-3.1-8B-Instruct")
    assert spec.name == "meta-llama/Llama-3.1-8B-Instruct"
    assert spec.config == presets.PRESETS["Llama-3.1-8B"].config
    args = ["plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--gpus", "8"]
    result = CliRunner().invoke(cli(), [*args, "--workload", "chat"])
    assert result.exit_code == 0 and "best per device: DP=8" in result.output


def test_hf_id_not_cached_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(TracekitError, match=r"huggingface-cli download org/m config\.json"):
        presets.model("org/m")


def test_gpu_spec_file_reproduces_the_builtin_plan(tmp_path: Path) -> None:
    path = tmp_path / "h100.json"
    path.write_text(json.dumps(H100_FILE))
    from_file = plan_gpu.load(path)
    assert from_file.flops == plan_gpu.builtin(spec_by_name("H100")).flops
    for model, work in (("Llama-3.1-8B", "reasoning"), ("Llama-3.1-405B-FP8", "chat")):
        spec, w = presets.model(model), presets.workload(work)
        assert plan(spec, from_file, 8, w).layouts == plan(spec, spec_by_name("H100"), 8, w).layouts
    fp8 = quantization.with_precision(presets.model("Llama-3.1-8B"), "fp8")
    w = presets.workload("chat")
    assert plan(fp8, from_file, 8, w).layouts == plan(fp8, spec_by_name("H100"), 8, w).layouts
    args = ["plan", "--model", "Llama-3.1-8B", "--gpus", "8", "--json"]
    a = json.loads(CliRunner().invoke(cli(), [*args, "--gpu-spec", str(path)]).output)
    b = json.loads(CliRunner().invoke(cli(), [*args, "--gpu", "H100"]).output)
    assert a["layouts"] == b["layouts"] and a["best"] == b["best"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "GPU spec is not JSON"),
        ('{"name": "x"}', "bad GPU spec: Object missing required field `flops`"),
        (json.dumps({**H100_FILE, "flops": {"fp4": 1e15}}), "unknown precision fp4"),
        (json.dumps({**H100_FILE, "flops": {"fp8": 1e15}}), "flops needs bf16 or fp16"),
        (json.dumps({**H100_FILE, "hbm_bytes": 0}), "every figure must be positive"),
        (json.dumps({**H100_FILE, "colour": "green"}), "unknown field"),
    ],
)
def test_bad_gpu_spec_is_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "gpu.json"
    path.write_text(content)
    args = ["plan", "--model", "Llama-3.1-8B", "--gpus", "8", "--gpu-spec", str(path)]
    result = CliRunner().invoke(cli(), args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
    assert str(path) in lines[0]


def test_added_gpus_and_their_precisions() -> None:
    for name in ("L40S", "L4", "H20", "GB200", "B300", "MI325X", "MI355X"):
        assert name in GPU_NAMES
        gpu = plan_gpu.builtin(spec_by_name(name))
        assert gpu.flops["fp8"] == pytest.approx(2 * gpu.flops["bf16"], rel=0.03)
    assert "int8" not in plan_gpu.builtin(spec_by_name("B300")).flops  # no native INT8 path
    assert "fp8" not in plan_gpu.builtin(spec_by_name("A100")).flops
    assert plan_gpu.builtin(spec_by_name("GB200")).gpus_per_node == 72
    assert spec_by_name("H200").name == "H200 SXM" and spec_by_name("H20").name == "H20"
    # an 8B model on one L4 (24 GB): BF16 leaves a small KV cache, FP8 more than doubles it
    work = presets.workload("chat")
    l4 = spec_by_name("L4")
    b16 = plan(presets.model("Llama-3.1-8B"), l4, 1, work).layouts[0]
    b8 = plan(quantization.with_precision(presets.model("Llama-3.1-8B"), "fp8"), l4, 1, work)
    assert b16.feasible and b8.layouts[0].max_seqs > 2 * b16.max_seqs


def test_tp_stays_within_a_node_unless_asked() -> None:
    spec, work, h100 = (
        presets.model("Llama-3.1-405B"),
        presets.workload("chat"),
        spec_by_name("H100"),
    )
    p = plan(spec, h100, 16, work)
    tp16 = next(r for r in p.layouts if r.layout == Layout(1, 16, 1))
    assert not tp16.feasible and "TP=16 would span nodes of 8 GPUs" in tp16.reason
    assert p.best is not None and p.best.layout == Layout(1, 8, 2)  # PP crosses the nodes
    assert any("2 nodes of 8 GPUs" in n for n in p.notes)
    across = plan(spec, h100, 16, work, tp_across_nodes=True)
    tp16 = next(r for r in across.layouts if r.layout == Layout(1, 16, 1))
    pp2 = next(r for r in across.layouts if r.layout == Layout(1, 8, 2))
    assert tp16.feasible and tp16.shares["collective"] > 2 * pp2.shares["collective"]
    # four GPUs per node: TP=8 of 8 GPUs is refused, PP=2 hands off between the nodes
    small = plan(presets.model("Llama-3.1-8B"), h100, 8, work, gpus_per_node=4)
    assert not next(r for r in small.layouts if r.layout == Layout(1, 8, 1)).feasible
    one = plan(presets.model("Llama-3.1-8B"), h100, 8, work)
    near = next(r for r in one.layouts if r.layout == Layout(1, 4, 2))
    far = next(r for r in small.layouts if r.layout == Layout(1, 4, 2))
    assert far.shares["bubble"] > near.shares["bubble"]
