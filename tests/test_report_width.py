"""Every report fits the terminal (issue 16): at 80, 100 and 160 columns no line is longer
than the width and no cell is cut to "…".

The "…" rule: renderers shorten names in the middle with ASCII "..." and let cells wrap at
words, so the only "…" a report may hold is one in the data itself (a rule text, an op
name). The check: a report holds exactly as many "…" as the same report rendered 1000
columns wide, where nothing needs cutting.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from tests.conftest import REPO, SHARED_TRACES
from tracekit.cli import main
from tracekit.compare import compare
from tracekit.render import compare as render_compare
from tracekit.render import console as render_console
from tracekit.render import resolve_width

WIDTHS = (80, 100, 160)
SAMPLES = sorted(p for p in (REPO / "sample_traces").iterdir() if (p / "traces").is_dir())
SHARED = [SHARED_TRACES / name for name in ("hta_2rank", "h100_bert_small")]


@pytest.fixture(autouse=True)
def _never_crop(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich crops a line wider than the console silently, cutting cells with no "…": print
    uncropped here, so a table too wide for the width shows as a line longer than it."""
    from rich.console import Console

    printed = Console.print

    def uncropped(self: Console, *objects: Any, **kwargs: Any) -> None:
        printed(self, *objects, **{**kwargs, "crop": False})

    monkeypatch.setattr(Console, "print", uncropped)


def _check(report: Callable[[int], str], width: int) -> str:
    out = report(width)
    for line in out.splitlines():
        assert cell_len(line) <= width, f"{cell_len(line)} > {width}: {line!r}"
    assert out.count("…") == report(1000).count("…"), "a cell was cut to …"
    return out


@cache
def _analysis(path: Path):  # type: ignore[no-untyped-def]
    from analyzers.engine.driver import analyze

    return analyze(path)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", SAMPLES + SHARED, ids=lambda p: p.name)
def test_analyze_report_fits(path: Path, width: int) -> None:
    if not path.exists():
        pytest.skip(f"{path} is not here")
    analysis = _analysis(path)
    out = _check(lambda w: render_console.render(analysis, width=w), width)
    assert "Where the time went" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_report_fits(width: int) -> None:
    comparison = compare(SAMPLES[:2])
    out = _check(lambda w: render_compare.render(comparison, width=w), width)
    assert "Layout sweep" in out
    for run in comparison.runs:  # the run names and per-device rates stay whole
        assert run.name in out and run.throughput is not None
        assert f"{run.throughput.tokens_per_s_per_device:,.1f}" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_plan_report_fits(width: int) -> None:
    args = ["plan", "--model", "Llama-3.1-8B", "--gpu", "H100", "--gpus", "8", "--width"]

    def report(w: int) -> str:
        result = CliRunner().invoke(main, [*args, str(w)])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "tracekit plan" in _check(report, width)


def test_width_from_columns_when_piped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    monkeypatch.setenv("COLUMNS", "93")
    assert resolve_width(None, 120) == 93
    assert resolve_width(140, 120) == 140  # an explicit --width wins
    assert resolve_width(50, 120) == 80  # never under 80
    monkeypatch.delenv("COLUMNS")
    assert resolve_width(None, 120) == 120
    path = SAMPLES[0]
    result = CliRunner().invoke(main, ["analyze", str(path)], env={"COLUMNS": "90"})
    assert result.exit_code == 0, result.output
    assert max(cell_len(line) for line in result.stdout.splitlines()) <= 90


def test_sweep_report_fits_columns(tmp_path: Path) -> None:
    from tests.test_sweep_cmd import FAKE, _sweep

    fake = tmp_path / "fake_vllm.py"
    fake.write_text(FAKE)
    got = _sweep(tmp_path / "sweep", sys.executable, str(fake), env={"COLUMNS": "80"})
    assert got.exit_code == 0, got.output
    assert "tok/s/dev" in got.stdout and "…" not in got.stdout
    assert max(cell_len(line) for line in got.stdout.splitlines()) <= 80
