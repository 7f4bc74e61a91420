"""tracekit sweep: layout specs, argv rewriting (exact), and sweeps of a fake vLLM command.

The fake command stands in for a vLLM run under capture: it takes its layout from vLLM's
options in its argv, or from the plugin's ``TRACEKIT_LAYOUT``, and writes what the plugin
would (engine meta, step records, one trace per rank); it can fail or interrupt the sweep.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from collectors.layout import engine_command, needs_plugin, parse_layouts, rewrite_argv
from collectors.settings import ENV_DIR, ENV_LAYOUT, Settings, from_env
from tracekit.cli_sweep import sweep_command
from tracekit.core import rundir
from tracekit.core.errors import TracekitError
from tracekit.core.layout import Layout
from tracekit.sweep import SWEEP_FILE, read_record

FAKE = r"""
import argparse, gzip, json, os, signal, sys, time
stop = []  # "serve": a server, running until SIGINT (from tracekit sweep --client)
signal.signal(signal.SIGINT, lambda *_: stop.append(1)) if "serve" in sys.argv else None
from pathlib import Path
from collectors.layout import parse_layout
from tracekit.core.layout import Layout

parser = argparse.ArgumentParser()
parser.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
parser.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1)
parser.add_argument("--data-parallel-size", "-dp", type=int, default=1)
parser.add_argument("--enable-expert-parallel", "-ep", action="store_true")
a, _ = parser.parse_known_args()
lay = Layout.of(a.data_parallel_size, a.tensor_parallel_size, a.pipeline_parallel_size,
                a.enable_expert_parallel)
if os.environ.get("TRACEKIT_LAYOUT"):
    lay = parse_layout(os.environ["TRACEKIT_LAYOUT"])
if os.environ.get("FAKE_IGNORE"):
    lay = Layout()
print(f"fake vllm: {lay.spec}", flush=True)
if lay.spec in os.environ.get("FAKE_FAIL", "").split(","):
    print(f"RuntimeError: fake failure under {lay.spec}", file=sys.stderr, flush=True)
    sys.exit(3)
if lay.spec in os.environ.get("FAKE_INTERRUPT", "").split(","):
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    os.kill(os.getppid(), signal.SIGINT)  # the user's Ctrl-C, as tracekit receives it
    time.sleep(60)
    sys.exit(5)
run = Path(os.environ["TRACEKIT_CAPTURE_DIR"])
m = lay
(run / "meta" / "engine-0.json").write_text(json.dumps({
    "model": {"architecture": "LlamaForCausalLM", "layers": 2, "heads": 4, "kv_heads": 2},
    "layout": {"dp": m.dp, "tp": m.tp, "pp": m.pp, "ep": m.ep}}))
base, step = 1_700_000_000_000_000_000, 1000 // lay.devices + 200 * (lay.devices - 1)
with (run / "steps" / "engine-0.jsonl").open("w") as f:
    for i in range(6):
        f.write(json.dumps({"ts_ns": base + i * step * 1000, "decode_tokens": 8}) + "\n")
raw = run / "traces" / ".raw"
raw.mkdir(parents=True, exist_ok=True)
for r in range(lay.devices):
    d, rest = divmod(r, lay.tp * lay.pp)
    p, t = divmod(rest, lay.tp)
    def op(cat, name, ts, dur):
        return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "pid": 1, "tid": 1}
    ev = [op("user_annotation", "execute_context_0(0)_generation_8(8)", i * step, step)
          for i in range(4)] + [op("cpu_op", "_C::onednn_mm", i * step, step // 2)
          for i in range(4)] + [op("cpu_op", "_C::shm_allreduce", i * step + step // 2,
          step // 4) for i in range(4) if lay.tp > 1]
    doc = {"schemaVersion": 1, "traceEvents": ev, "baseTimeNanoseconds": base,
           "distributedInfo": {"rank": rest, "world_size": lay.tp * lay.pp}}
    name = f"dp{d}_pp{p}_tp{t}_rank{rest}.1700000000123.pt.trace.json.gz"
    (raw / name).write_bytes(gzip.compress(json.dumps(doc).encode()))
print("generated 48 tokens", flush=True)
while "serve" in sys.argv and not stop:
    time.sleep(0.05)
"""
LAYOUTS = "tp=1,tp=2;pp=2,dp=2"
LABELS = ["tp=1", "tp=2", "pp=2", "dp=2"]
OPTIONS = ["-q", "--warmup-steps", "1", "--steps", "4"]


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    path = tmp_path / "fake_vllm.py"  # the name holds "vllm": "fake_vllm.py serve" is a CLI
    path.write_text(FAKE)
    return path


def _sweep(
    out: Path, *command: str, layouts: str = LAYOUTS, env: dict[str, str] | None = None
) -> Result:
    env = {"FAKE_FAIL": "", "FAKE_INTERRUPT": "", "FAKE_IGNORE": "", **(env or {})}
    args = ["--layouts", layouts, "--out", str(out), *OPTIONS]
    return CliRunner().invoke(sweep_command, [*args, "--", *command], env=env)


def _entries(out: Path) -> dict[str, tuple[str, int | None]]:
    record = read_record(out)
    assert record is not None
    return {k: (v.status, v.exit_code) for k, v in record.runs.items()}


# --- layout specs ----------------------------------------------------------------------------


def test_spec_parsing() -> None:
    assert [x.spec for x in parse_layouts("tp=1,tp=2,pp=2,dp=2")] == LABELS
    assert parse_layouts(" TP=2 + pp=2 ; tp=4 ") == [Layout(tp=2, pp=2), Layout(tp=4)]
    assert [x.spec for x in parse_layouts("dp=2+tp=2+ep,tp=2+ep=2")] == ["tp=2+dp=2+ep", "tp=2+ep"]
    assert parse_layouts("tp=2+dp=2+ep") == [Layout(dp=2, tp=2, pp=1, ep=4)]
    assert [x.label for x in parse_layouts("tp=2+dp=2+ep")] == ["DP=2 TP=2 EP=4"]
    assert Layout(tp=2, pp=2).devices == 4


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty layout"),
        ("tp=2,,pp=2", "empty layout"),
        ("tp=0", "tp needs a whole number ≥ 1, got '0'"),
        ("tp=two", "tp needs a whole number ≥ 1, got 'two'"),
        ("tp", "tp needs a whole number"),
        ("xp=2", "unknown part 'xp=2' (use tp=N, pp=N, dp=N, ep)"),
        ("tp=2+tp=4", "tp given twice"),
        ("tp=2,tp=2", "layout tp=2 is given twice"),
        ("tp=1,pp=1", "layout tp=1 is given twice"),
        ("tp=2+ep=4", "expert-parallel size is tp × dp = 2, not 4"),
        ("pp=2+ep", "expert parallelism needs tp × dp > 1"),
    ],
)
def test_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(TracekitError, match=re.escape(message)):
        parse_layouts(spec)


# --- argv ------------------------------------------------------------------------------------

# "argv | layout | expected argv", exact
REWRITES = [
    # existing option rewritten, absent ones appended (vllm serve)
    "vllm serve M --tensor-parallel-size 4 --max-model-len 9 | tp=2+pp=2 | "
    "vllm serve M --tensor-parallel-size 2 --max-model-len 9 --pipeline-parallel-size 2",
    # = forms, short forms, underscores keep their spelling; left-out degrees are 1
    "python vllm_cli.py serve M -tp=4 --pipeline_parallel_size=2 -dp 2 | tp=2 | "
    "python vllm_cli.py serve M -tp=2 --pipeline_parallel_size=1 -dp 1",
    "vllm serve M | tp=1 | vllm serve M",
    "vllm serve M -ep | tp=2 | vllm serve M --tensor-parallel-size 2",
    "vllm serve M --no-enable-expert-parallel | tp=2+ep | "
    "vllm serve M --enable-expert-parallel --tensor-parallel-size 2",
    "vllm serve M -ep -ep | tp=2+ep | vllm serve M -ep --tensor-parallel-size 2",
    "vllm serve M --no-enable-expert-parallel | tp=1 | vllm serve M --no-enable-expert-parallel",
    "/opt/bin/vllm bench throughput --model M | dp=2 | "
    "/opt/bin/vllm bench throughput --model M --data-parallel-size 2",
    "python -m vllm.entrypoints.cli.main run-batch -i x | tp=2+ep | "
    "python -m vllm.entrypoints.cli.main run-batch -i x --tensor-parallel-size 2 "
    "--enable-expert-parallel",
    "vllm bench serve --model M | tp=2 | vllm bench serve --model M",  # a client: no engine
    # a script: its own flags untouched, vLLM's options rewritten but never added
    "python llm.py --tp 4 --tensor-parallel-size=4 | tp=2+pp=2 | "
    "python llm.py --tp 4 --tensor-parallel-size=2",
]


@pytest.mark.parametrize("case", REWRITES)
def test_rewrite_argv(case: str) -> None:
    argv, spec, expected = case.split(" | ")
    assert rewrite_argv(argv.split(), parse_layouts(spec)[0]) == expected.split()


def test_engine_commands_and_plugin() -> None:
    assert engine_command(["vllm", "serve", "M"]) == "serve"
    assert engine_command(["python", "vllm_cli.py", "bench", "latency"]) == "bench latency"
    assert engine_command(["vllm", "bench", "serve"]) is None
    assert engine_command(["python", "serve.py", "serve"]) is None
    assert needs_plugin(["python", "tiny_llm.py", "--tp", "2"])
    assert not needs_plugin(["vllm", "serve", "M"])
    with pytest.raises(TracekitError, match="--tensor-parallel-size has no value"):
        rewrite_argv(["vllm", "serve", "M", "--tensor-parallel-size"], Layout())


# --- the plugin's layout override ------------------------------------------------------------


def test_settings_carry_the_layout() -> None:
    env = Settings(run_dir=Path("/tmp/x"), layout="tp=2+pp=2").to_env()
    assert env[ENV_LAYOUT] == "tp=2+pp=2"
    assert Settings(run_dir=Path("/tmp/x")).to_env()[ENV_LAYOUT] == ""  # no leak from outside
    assert from_env(env) == Settings(run_dir=Path("/tmp/x").resolve(), layout="tp=2+pp=2")
    assert from_env({ENV_DIR: "/tmp/x", ENV_LAYOUT: ""}) == Settings(run_dir=Path("/tmp/x"))


def test_plugin_sets_the_layout_on_engine_args(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook on a stand-in ``EngineArgs`` (vLLM is not installed in this environment)."""
    from collectors import vllm_plugin

    class EngineArgs:
        def create_engine_config(self) -> dict[str, Any]:
            return dict(vars(self))  # what the hook set

    arg_utils = types.ModuleType("vllm.engine.arg_utils")
    arg_utils.EngineArgs = EngineArgs  # type: ignore[attr-defined]
    for name, module in (
        ("vllm", types.ModuleType("vllm")),
        ("vllm.engine", types.ModuleType("vllm.engine")),
        ("vllm.engine.arg_utils", arg_utils),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    settings = Settings(run_dir=Path("/tmp/x"), mode="nvtx", layout="tp=2+dp=2+ep")
    vllm_plugin._install_engine_args_hook(settings)
    got = EngineArgs().create_engine_config()
    assert got == dict(
        tensor_parallel_size=2,
        pipeline_parallel_size=1,
        data_parallel_size=2,
        enable_expert_parallel=True,
    )


# --- sweeps of the fake command --------------------------------------------------------------


def test_sweep_through_the_plugin(tmp_path: Path, fake: Path) -> None:
    out = tmp_path / "sweep"
    got = _sweep(out, sys.executable, str(fake), "--requests", "4")
    assert got.exit_code == 0, got.output
    assert sorted(p.name for p in out.iterdir()) == sorted([*LABELS, SWEEP_FILE, "comparison.json"])
    record = read_record(out)
    assert record is not None
    assert (record.status, record.layouts, record.pid) == ("complete", LABELS, None)
    for label in LABELS:
        entry = record.runs[label]
        assert (entry.status, entry.exit_code, entry.plugin_layout) == ("complete", 0, label)
        assert entry.argv == [sys.executable, str(fake), "--requests", "4"]
        manifest = rundir.read_manifest(out / label)
        assert manifest.layout == parse_layouts(label)[0]
        assert manifest.capture["steps"] == 4
    lines = got.stdout.splitlines()
    for label, shown in zip(LABELS, ["TP=1", "TP=2", "PP=2", "DP=2"], strict=True):
        row = next(line for line in lines if line.split()[:2] == [label, shown])
        regime = record.runs[label].regime
        assert regime is not None and regime in row
    assert "interconnect-bound" in got.stdout and "tok/s/dev" in got.stdout
    assert "sweep complete: 4 layout(s)" in got.stdout
    comparison = json.loads((out / "comparison.json").read_text())
    assert [r["name"] for r in comparison["runs"]] == ["tp=1", "dp=2", "pp=2", "tp=2"]


def test_sweep_of_a_vllm_cli_rewrites_argv(tmp_path: Path, fake: Path) -> None:
    out = tmp_path / "sweep"
    cmd = [sys.executable, str(fake), "bench", "throughput", "--tensor-parallel-size=8"]
    got = _sweep(out, *cmd, layouts="tp=2;tp=2+pp=2+ep")
    assert got.exit_code == 0, got.output
    record = read_record(out)
    assert record is not None
    assert record.runs["tp=2"].argv == [*cmd[:-1], "--tensor-parallel-size=2"]
    assert record.runs["tp=2+pp=2+ep"].argv == [
        *cmd[:-1],
        "--tensor-parallel-size=2",
        "--pipeline-parallel-size",
        "2",
        "--enable-expert-parallel",
    ]
    assert all(e.plugin_layout is None for e in record.runs.values())
    assert rundir.read_manifest(out / "tp=2+pp=2+ep").layout == Layout(tp=2, pp=2, ep=2)


def test_failed_layout_is_reported_and_the_sweep_goes_on(tmp_path: Path, fake: Path) -> None:
    out = tmp_path / "sweep"
    got = _sweep(out, sys.executable, str(fake), env={"FAKE_FAIL": "tp=2"})
    assert got.exit_code == 1, got.output
    assert _entries(out) == {
        "tp=1": ("complete", 0),
        "tp=2": ("failed", 3),
        "pp=2": ("complete", 0),
        "dp=2": ("complete", 0),
    }
    record = read_record(out)
    assert record is not None and record.status == "failed"
    assert record.runs["tp=2"].last_line == "RuntimeError: fake failure under tp=2"
    assert "tp=2: failed (exit code 3): RuntimeError: fake failure under tp=2" in got.stderr
    assert (
        "  tp=2             failed, exit code 3: last log line: RuntimeError: "
        "fake failure under tp=2 (tp=2/)" in got.stdout
    )
    assert "tracekit compare: 3 run(s)" in got.stdout
    # resume: complete layouts kept, the failed one moved aside and run again
    again = _sweep(out, sys.executable, str(fake))
    assert again.exit_code == 0, again.output
    assert [line.split(": ", 1)[1] for line in again.stderr.splitlines() if "kept" in line] == [
        f"[{i}/4] {label}: complete in {out / label}, kept"
        for i, label in ((1, "tp=1"), (3, "pp=2"), (4, "dp=2"))
    ]
    assert f"tp=2: the earlier attempt (failed) moved aside to {out / 'tp=2.failed.1'}" in (
        again.stderr
    )
    assert rundir.read_manifest(out / "tp=2.failed.1").exit_code == 3
    assert _entries(out)["tp=2"] == ("complete", 0)
    record = read_record(out)
    assert record is not None and record.runs["tp=2"].moved_aside == ["tp=2.failed.1"]
    assert "tracekit compare: 4 run(s)" in again.stdout


def test_interrupted_sweep_resumes_where_it_stopped(tmp_path: Path, fake: Path) -> None:
    out = tmp_path / "sweep"
    cli = (
        "import sys; from tracekit.cli import main; from tracekit.cli_sweep import sweep_command;"
        "main.commands.get('sweep') or main.add_command(sweep_command); main()"
    )
    argv = [sys.executable, "-c", cli, "sweep", "--layouts", LAYOUTS, "--out", str(out), *OPTIONS]
    env = {**os.environ, "FAKE_INTERRUPT": "pp=2"}
    proc = subprocess.run(
        [*argv, "--", sys.executable, str(fake)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 130, proc.stderr
    assert _entries(out) == {
        "tp=1": ("complete", 0),
        "tp=2": ("complete", 0),
        "pp=2": ("interrupted", 130),
        "dp=2": ("pending", None),
    }
    record = read_record(out)
    assert record is not None and record.status == "interrupted"
    assert "sweep interrupted: 4 layout(s)" in proc.stdout
    assert "dp=2             pending: not run" in proc.stdout
    assert rundir.read_manifest(out / "pp=2").status == "interrupted"
    again = _sweep(out, sys.executable, str(fake))
    assert again.exit_code == 0, again.output
    assert "pp=2: the earlier attempt (interrupted) moved aside" in again.stderr
    assert sum("kept" in line for line in again.stderr.splitlines()) == 2
    assert set(_entries(out).values()) == {("complete", 0)}
    assert (out / "pp=2.interrupted.1").is_dir()


def test_a_killed_sweeps_running_layout_is_redone(tmp_path: Path, fake: Path) -> None:
    out = tmp_path / "sweep"
    assert _sweep(out, sys.executable, str(fake), layouts="tp=1,tp=2").exit_code == 0
    manifest = rundir.read_manifest(out / "tp=2")
    manifest.status, manifest.exit_code = "running", None  # as a SIGKILLed sweep leaves it
    rundir.write_manifest(out / "tp=2", manifest)
    again = _sweep(out, sys.executable, str(fake), layouts="tp=1,tp=2")
    assert again.exit_code == 0, again.output
    assert "tp=2: the earlier attempt (running) moved aside" in again.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["tp=1", "tp=2", "tp=2.running.1"]


def test_layout_not_applied_is_a_warning(tmp_path: Path, fake: Path) -> None:
    out = tmp_path / "sweep"
    got = _sweep(out, sys.executable, str(fake), layouts="tp=1,tp=2", env={"FAKE_IGNORE": "1"})
    assert got.exit_code == 0, got.output
    record = read_record(out)
    assert record is not None and record.runs["tp=1"].warnings == []
    assert (
        record.runs["tp=2"]
        .warnings[0]
        .startswith("the run reports dp=1 tp=1 pp=1 ep=1, not the layout's dp=1 tp=2 pp=1 ep=1")
    )
    assert "warning: the run reports" in got.stdout


def test_command_that_cannot_start_or_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    got = _sweep(out, str(tmp_path / "missing"), layouts="tp=1")
    assert got.exit_code == 1
    assert _entries(out) == {"tp=1": ("failed", 127)}
    assert "could not start the command" in got.stdout
    out2 = tmp_path / "sweep2"
    got = _sweep(out2, sys.executable, "-c", "print('no vllm here')", layouts="tp=1")
    assert got.exit_code == 1
    record = read_record(out2)
    assert record is not None
    assert (record.runs["tp=1"].error or "").startswith("analysis failed:")
    assert "no layout completed: nothing to compare" in got.stdout


def test_refuses_another_command_or_a_foreign_directory(tmp_path: Path, fake: Path) -> None:
    out = tmp_path / "sweep"
    assert _sweep(out, sys.executable, str(fake), layouts="tp=1").exit_code == 0
    other = _sweep(out, sys.executable, str(fake), "--other", layouts="tp=1")
    assert other.exit_code == 2
    assert "holds a sweep of another command" in other.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    got = _sweep(foreign, sys.executable, str(fake), layouts="tp=1")
    assert got.exit_code == 2 and "holds no sweep.json: not a sweep" in got.stderr
    bad = _sweep(tmp_path / "bad", sys.executable, str(fake), layouts="tp=2+zz=1")
    assert bad.exit_code == 2 and "unknown part 'zz=1'" in bad.stderr
    assert not (tmp_path / "bad").exists()
