"""The capture wrapper without vLLM: exit codes, signals, logs, never overwriting a run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collectors.settings import ENV_DIR, from_env
from tests.conftest import REPO
from tracekit.core import rundir
from tracekit.render import capture as talk

TRACEKIT = [sys.executable, "-m", "tracekit.cli"]


def _capture(out: Path, *command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TRACEKIT, "capture", "--out", str(out), "--", *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        **kwargs,
    )


def test_exit_code_logs_and_manifest(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = "import os, sys; print('hello', os.environ['TRACEKIT_CAPTURE_DIR']); sys.exit(3)"
    proc = _capture(run, sys.executable, "-c", code)
    assert proc.returncode == 3
    assert proc.stdout.startswith("hello ")  # passed through live
    assert (run / rundir.LOGS / "stdout.log").read_text() == proc.stdout
    manifest = rundir.read_manifest(run)
    assert (manifest.status, manifest.exit_code) == ("failed", 3)
    assert manifest.argv[-1] == code
    assert manifest.capture["mode"] == "full"
    assert manifest.hardware["cpu_cores"] == os.cpu_count()
    assert any("nothing was recorded" in n for n in manifest.notes)
    assert proc.stderr.splitlines()[0].startswith(f"tracekit: capturing `{sys.executable} -c")
    assert proc.stderr.splitlines()[-1] == "tracekit: command exited with status 3"


def test_existing_run_directory_is_never_overwritten(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("data")
    proc = _capture(run, sys.executable, "-c", "pass")
    assert proc.returncode == 2
    assert "never overwritten" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert sorted(p.name for p in run.iterdir()) == ["keep.txt"]


def test_missing_command_leaves_no_run_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _capture(run, "no-such-command-tracekit")
    assert proc.returncode == 127
    assert proc.stderr == (
        "tracekit: error: no-such-command-tracekit: could not start the command: no such command\n"
    )
    assert not run.exists()
    retry = _capture(run, "true")  # the same --out is not blocked
    assert retry.returncode == 0, retry.stderr
    assert rundir.read_manifest(run).status == "nothing-recorded"


def test_command_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    proc = _capture(tmp_path / "run", str(script))
    assert (proc.returncode, proc.stderr.count("\n")) == (127, 1)
    assert "not executable" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_command_without_vllm_records_nothing_and_says_why(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _capture(run, "true")
    assert proc.returncode == 0
    manifest = rundir.read_manifest(run)
    assert (manifest.status, manifest.exit_code) == ("nothing-recorded", 0)
    first = proc.stderr.splitlines()[0]
    assert first == (
        f"tracekit: capturing `true` into {run}/ (5 warm-up steps, then 20 profiled; "
        "torch profiler traces + step stats)"
    )
    text = " ".join(proc.stderr.split())
    assert "status nothing-recorded (exit 0)" in text
    assert "the command did not start vLLM" in text
    assert "tracekit is not installed in the command's Python environment" in text
    assert "tracekit analyze" not in text
    analyze = subprocess.run(
        [*TRACEKIT, "analyze", str(run)], capture_output=True, text=True, check=False
    )
    assert (analyze.returncode, analyze.stderr.count("\n")) == (2, 1)


def test_failing_command_names_its_exit_status(tmp_path: Path) -> None:
    proc = _capture(tmp_path / "run", "false")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == "tracekit: command exited with status 1"
    assert rundir.read_manifest(tmp_path / "run").status == "failed"


def test_summary_of_a_captured_run(tmp_path: Path) -> None:
    run = tmp_path / "tp2"
    shutil.copytree(REPO / "sample_traces" / "vllm_cpu_tp2", run)
    summary = talk.summarize(run)
    manifest = rundir.read_manifest(run)
    traces = sorted((run / rundir.TRACES).iterdir())
    assert summary.status == "complete" and summary.recorded
    assert summary.ranks == len(manifest.ranks) == 2
    assert summary.trace_bytes == tuple(p.stat().st_size for p in traces)
    assert summary.engines == 1
    assert summary.step_records == len(rundir.read_steps(run))
    assert summary.warmup_steps == manifest.capture["warmup_steps"]
    assert summary.window_source == "traces"
    assert summary.window_steps == manifest.capture["steps"]  # profiled as asked
    assert summary.window_ns is not None and summary.window_ns > 0
    text = talk.render(summary)
    table = text.splitlines()[: -len(talk.next_commands(summary))]
    assert max(len(line) for line in table) <= 80
    rows = dict(talk.rows(summary))
    assert rows["ranks"] == "2 captured"
    assert rows["steps"] == f"{summary.step_records} step records from 1 engine"
    assert rows["window"].startswith(f"{manifest.capture['steps']} steps, ")
    assert text.splitlines()[-2:] == [
        f"  next: tracekit analyze {run}",
        f"        tracekit open {run}",
    ]


def test_summary_without_step_annotations_uses_the_manifest(tmp_path: Path) -> None:
    run = tmp_path / "tp2"
    shutil.copytree(REPO / "sample_traces" / "vllm_cpu_tp2", run)
    for trace in (run / rundir.TRACES).iterdir():
        trace.write_bytes(b"")  # unreadable: the window comes from the manifest
    summary = talk.summarize(run)
    assert (summary.window_source, summary.window_ns) == ("manifest", None)
    assert summary.window_steps == rundir.read_manifest(run).capture["steps"]


def test_sigint_is_forwarded_and_the_run_marked_interrupted(tmp_path: Path) -> None:
    run = tmp_path / "run"
    child = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    print('flushed', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [*TRACEKIT, "capture", "--out", str(run), "--", sys.executable, "-c", child],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0  # the command's own exit status after it flushed
    assert "flushed" in out
    manifest = rundir.read_manifest(run)
    assert (manifest.status, manifest.exit_code) == ("interrupted", 0)


def test_killed_command_exit_status(tmp_path: Path) -> None:
    proc = _capture(
        tmp_path / "run",
        sys.executable,
        "-c",
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
    )
    assert proc.returncode == 128 + signal.SIGKILL
    assert proc.stderr.splitlines()[-1] == "tracekit: command killed by SIGKILL (exit status 137)"


def test_plugin_settings_only_under_capture() -> None:
    assert from_env({}) is None
    settings = from_env({ENV_DIR: "/tmp/x", "TRACEKIT_CAPTURE_MODE": "nvtx"})
    assert settings is not None
    assert (settings.mode, settings.warmup_steps, settings.steps) == ("nvtx", 5, 20)


def test_plugin_is_inert_without_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    from collectors import vllm_plugin

    monkeypatch.delenv(ENV_DIR, raising=False)
    before = time.monotonic()
    vllm_plugin.register()  # must not import vLLM or touch anything
    assert time.monotonic() - before < 1
    assert vllm_plugin._INSTALLED == []
    assert "vllm" not in sys.modules


FAKE_NSYS = """#!/bin/sh
# A stand-in for Nsight Systems: runs the command, writes a report, exports a given SQLite.
echo "$@" >> "$NSYS_LOG"
if [ "$1" = "profile" ]; then
  shift
  out=""
  while [ "${1#--}" != "$1" ]; do
    case "$1" in --output=*) out="${1#--output=}";; esac
    shift
  done
  "$@"
  rc=$?
  echo report > "$out.nsys-rep"
  exit $rc
fi
for a in "$@"; do case "$a" in --output=*) o="${a#--output=}";; esac; done
cp "$FAKE_SQLITE" "$o"
"""


def test_nsys_mode_runs_under_nsys_and_exports(tmp_path: Path) -> None:
    from tests.conftest import shared

    sqlite = shared("nsys_a100_saxpy_mpi/report.sqlite")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    nsys = bin_dir / "nsys"
    nsys.write_text(FAKE_NSYS)
    nsys.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_SQLITE": str(sqlite),
        "NSYS_LOG": str(tmp_path / "nsys.log"),
    }
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            *TRACEKIT,
            "capture",
            "--nsys",
            "--out",
            str(run),
            "--",
            sys.executable,
            "-c",
            "print('hi')",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "nsys.log").read_text().splitlines()
    assert calls[0].startswith(
        "profile --trace=cuda,nvtx,osrt --cuda-graph-trace=node --capture-range=cudaProfilerApi"
    )
    assert calls[1].startswith("export --type=sqlite")
    assert rundir.read_manifest(run).capture["mode"] == "nsys"
    import tracekit

    analysis = tracekit.analyze(run)
    assert len(analysis.ranks) == 1
    assert analysis.ranks[0].device_names == ["NVIDIA A100-SXM4-40GB"]


def test_nsys_mode_without_nsys(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    proc = subprocess.run(
        [*TRACEKIT, "capture", "--nsys", "--out", str(tmp_path / "run"), "--", "true"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "nsys not found on PATH" in proc.stderr
    assert not (tmp_path / "run").exists()


SHELL_HELLO_OOPS = ["sh", "-c", "echo hello; echo oops >&2"]


def test_quiet_keeps_the_command_output_in_logs_only(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.run(
        [*TRACEKIT, "capture", "--quiet", "--out", str(run), "--", *SHELL_HELLO_OOPS],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert "hello" not in lines and "oops" not in lines  # (the start line quotes the command)
    assert proc.stderr.startswith("tracekit: capturing `sh -c")  # the start line stays
    assert "tracekit capture: nothing-recorded" in proc.stderr  # and the summary
    assert (run / rundir.LOGS / "stdout.log").read_text() == "hello\n"
    assert (run / rundir.LOGS / "stderr.log").read_text() == "oops\n"


def test_live_status_figures_from_a_growing_run(tmp_path: Path) -> None:
    from collectors.live_status import live_figures, status_line
    from collectors.settings import RAW_TRACES

    run = tmp_path / "run"
    for sub in (rundir.STEPS, rundir.TRACES):
        (run / sub).mkdir(parents=True)
    empty = live_figures(run, warmup_steps=3, window_steps=12)
    assert (empty.steps, empty.engines, empty.trace_files) == (0, 0, 0)
    assert status_line(empty, 5.4) == "0:05  0 engine steps · warm-up 0/3 · traces from 0 ranks"

    steps = run / rundir.STEPS / "engine-0.jsonl"
    steps.write_text('{"step": 1}\n' * 2)
    assert live_figures(run, 3, 12).window == "warm-up 2/3"
    steps.write_text('{"step": 1}\n' * 8 + '{"step": 9')  # a line in flight is not a step yet
    figures = live_figures(run, 3, 12)
    assert (figures.steps, figures.window) == (8, "window open 5/12")
    (run / rundir.STEPS / "engine-1.jsonl").write_text('{"step": 1}\n')
    assert live_figures(run, 3, 12).engines == 2

    raw = run / rundir.TRACES / RAW_TRACES
    raw.mkdir()
    for name in ("rank0.123456.pt.trace.json.gz", "async_llm.123456.pt.trace.json.gz"):
        (raw / name).write_bytes(b"")
    (raw / "rank0.profiler_out.txt").write_text("")
    figures = live_figures(run, 3, 12)
    assert (figures.trace_files, figures.window) == (1, "window closed")  # traces: window done
    assert status_line(figures, 3725) == (
        "1:02:05  8 engine steps (2 engines) · window closed · traces from 1 rank"
    )
    (raw / "rank1.123457.pt.trace.json.gz").write_bytes(b"")
    (run / rundir.STEPS / "engine-0.jsonl").write_text('{"step": 1}\n' * 15)
    figures = live_figures(run, 3, 12)
    assert (figures.steps, figures.trace_files, figures.window) == (15, 2, "window closed")
