"""Bad input: one line naming the file and the cause, exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.builders import cpu_op, write_trace
from tests.conftest import SAMPLE_TP2
from tracekit.cli import main


def _run(path: Path, *extra: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["analyze", str(path), *extra])
    return result.exit_code, result.stdout, result.stderr


def _good(path: Path) -> Path:
    return write_trace(path, [cpu_op("aten::mm", 0, 10)])


def _cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    data = (_good(tmp / "src.json.gz")).read_bytes()
    (tmp / "truncated.json.gz").write_bytes(data[: len(data) // 2])
    (tmp / "invalid.json").write_text('{"traceEvents": [{"ph": "X", ')
    (tmp / "notrace.json").write_text('{"hello": "world"}')
    (tmp / "list.json").write_text("[1, 2, 3]")
    (tmp / "empty.json").write_text("")
    (tmp / "noevents.json").write_text('{"traceEvents": []}')
    (tmp / "badfield.json").write_text(
        '{"traceEvents": [{"ph": "X", "name": "a", "ts": "soon", "pid": 1, "tid": 1}]}'
    )
    (tmp / "negdur.json").write_text(
        '{"traceEvents": [{"ph": "X", "name": "a", "ts": 1, "dur": -5, "pid": 1, "tid": 1}]}'
    )
    return {
        "truncated gzip": (tmp / "truncated.json.gz", "truncated gzip"),
        "invalid json": (tmp / "invalid.json", "invalid JSON"),
        "not a trace": (tmp / "notrace.json", "not a trace"),
        "wrong document": (tmp / "list.json", "not a valid Kineto trace"),
        "empty file": (tmp / "empty.json", "empty file"),
        "empty trace": (tmp / "noevents.json", "empty trace"),
        # a ts of another type is read (a numeric string), never refused: one that is not
        # a number leaves its event out, here the only one
        "bad field": (tmp / "badfield.json", "1 complete events whose 'ts' or 'dur' is not"),
        "negative duration": (tmp / "negdur.json", "negative durations"),
        "missing path": (tmp / "nope.json.gz", "no such file"),
        "empty folder": (tmp / "emptydir", "no trace files"),
    }


CASES = [
    "truncated gzip",
    "invalid json",
    "not a trace",
    "wrong document",
    "empty file",
    "empty trace",
    "bad field",
    "negative duration",
    "missing path",
    "empty folder",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, case: str) -> None:
    (tmp_path / "emptydir").mkdir()
    path, cause = _cases(tmp_path)[case]
    code, out, err = _run(path)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tracekit: error: {path}: ")
    assert cause in lines[0]


def test_one_unreadable_rank_among_several_warns(tmp_path: Path) -> None:
    write_trace(tmp_path / "rank-0.json.gz", [cpu_op("aten::mm", 0, 10)], rank=0, world=3)
    write_trace(tmp_path / "rank-1.json.gz", [cpu_op("aten::mm", 0, 10)], rank=1, world=3)
    (tmp_path / "rank-2.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    code, out, _ = _run(tmp_path)
    assert code == 0
    assert "rank trace unreadable, analysed without it" in out
    assert "rank-2.json.gz" in out
    assert "2 of 3 ranks" in out


def test_real_process_prints_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = subprocess.run(
        [sys.executable, "-m", "tracekit.cli", "analyze", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_cpu_only_trace_is_valid_input(tmp_path: Path) -> None:
    code, out, _ = _run(_good(tmp_path / "cpu.json.gz"))
    assert code == 0
    assert "CPU only" in out


@pytest.mark.parametrize("option", [["--top", "-3"], ["--top", "0"], ["--width", "-1"]])
def test_option_values_out_of_range_are_usage_errors(option: list[str]) -> None:
    result = CliRunner().invoke(main, ["analyze", *option, str(SAMPLE_TP2)])
    assert result.exit_code == 2
    assert "is not in the range" in result.output
