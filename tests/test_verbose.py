"""-v / -vv: each stage's time and what it read on stderr, from the parent whatever -j is."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from analyzers.engine.driver import analyze, analyze_trace
from analyzers.read.loader import load

SAMPLE = Path(__file__).resolve().parents[1] / "sample_traces" / "vllm_cpu_tp2"


def _stderr(*args: str) -> str:
    cmd = [sys.executable, "-m", "tracekit.cli", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    return done.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_v_logs_each_stage_from_the_parent(jobs: str) -> None:
    err = _stderr("-v", "analyze", "-j", jobs, str(SAMPLE))
    lines = err.splitlines()
    assert all(line.startswith("INFO ") for line in lines), err
    for file in ("dp0_pp0_tp0_rank0.pt.trace.json.gz", "dp0_pp0_tp1_rank1.pt.trace.json.gz"):
        assert any(f"parsed {file}: " in line and " events, " in line for line in lines)
    ranks = [line for line in lines if "classify " in line and "attribute " in line]
    assert len(ranks) == 2 and all("kv_stall " in line for line in ranks)
    for what in ("peaks: ", "window: common to 2 ranks", "run-level reports: ", "regime: "):
        assert any(what in line for line in lines), what
    assert "DEBUG" not in err


def test_vv_adds_rule_matches() -> None:
    err = _stderr("-vv", "analyze", "-j", "2", str(SAMPLE))
    assert err.count("rules matched: ") == 2
    # each file parsed once: the window and peaks are settled before the stages run
    assert sum(" parsed " in line and " events, " in line for line in err.splitlines()) == 2


def test_quiet_without_v() -> None:
    assert _stderr("analyze", str(SAMPLE)) == ""


def test_caplog_sequential_and_pooled_say_the_same_stages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        analyze(SAMPLE, jobs=2)
    pooled = [r.getMessage() for r in caplog.records if "classify " in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        analyze_trace(load(SAMPLE, jobs=1))
    sequential = [r.getMessage() for r in caplog.records if "classify " in r.getMessage()]
    assert len(pooled) == len(sequential) == 2
    assert [m.split(":")[0] for m in pooled] == [m.split(":")[0] for m in sequential]
