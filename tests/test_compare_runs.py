"""tracekit compare: runs told apart, the same run twice, option values, unreadable ranks."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from tests.test_compare import TP2, Shape, _every, _run
from tracekit.cli import main
from tracekit.compare import compare
from tracekit.compare_runs import run_names

# TP=2 with more of each step in the exposed all-reduce: slower than TP2 per device
TP2_SLOW = Shape(1000, gemm=300, attn=150, all_reduce=450)


def test_equal_layouts_are_told_apart_by_name(tmp_path: Path) -> None:
    fast = _run(tmp_path, "fast", TP2, [_every(800, 6)], tp=2)
    slow = _run(tmp_path, "slow", TP2_SLOW, [_every(1000, 6)], tp=2)
    (finding,) = compare([fast, slow]).findings
    assert finding.faster == "fast" and finding.slower == "slow"
    assert "TP=2 (slow) spends " in finding.text and " vs TP=2 (fast) " in finding.text
    assert "TP=2 spends" not in finding.text


def test_the_same_run_twice_is_a_warning(tmp_path: Path) -> None:
    run = _run(tmp_path, "tp2", TP2, [_every(800, 6)], tp=2)
    twice = compare([run, run])
    assert [r.name for r in twice.runs] == [f"{run} #1", f"{run} #2"]
    assert any("same run (the same path)" in w for w in twice.warnings)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    copied = compare([run, copy])
    assert any(
        w.startswith("tp2 and copy are the same run (identical trace files)")
        for w in copied.warnings
    )
    other = _run(tmp_path, "slow", TP2_SLOW, [_every(1000, 6)], tp=2)
    assert not any("same run" in w for w in compare([run, other]).warnings)


def test_run_names() -> None:
    assert run_names(["a/x", "b/y"]) == ["x", "y"]
    assert run_names(["a/x", "b/x"]) == ["a/x", "b/x"]
    assert run_names(["a/x", "a/x", "b"]) == ["a/x #1", "a/x #2", "b"]


def test_bad_option_values_are_usage_errors(tmp_path: Path) -> None:
    run = _run(tmp_path, "tp2", TP2, [_every(800, 6)], tp=2)
    result = CliRunner().invoke(main, ["compare", "--width", "-3", str(run), str(run)])
    assert result.exit_code == 2 and "Invalid value for '--width'" in result.output


def test_an_unreadable_rank_is_warned_about_once(tmp_path: Path) -> None:
    good = _run(tmp_path, "good", TP2, [_every(800, 6)], tp=2)
    bad = _run(tmp_path, "bad", TP2, [_every(800, 6)], tp=2)
    broken = next((bad / "traces").glob("*tp1*"))
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    result = CliRunner().invoke(main, ["compare", str(good), str(bad)])
    assert result.exit_code == 0, result.output
    everything = result.stdout + result.stderr
    assert everything.count(broken.name) == 1, everything
    assert "bad: rank trace unreadable, analysed without it: " in everything
    assert "WARNING" not in result.stderr
