"""Timestamps become exact int64 nanoseconds, whatever their JSON form."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analyzers.kineto import parse_trace
from tests.builders import cpu_op, write_trace


def _raw_trace(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "t.json"
    path.write_text(body)
    return path


def test_integer_microseconds(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.json.gz", [cpu_op("aten::mm", 1669783687464181, 45)])
    parsed = parse_trace(path)
    assert parsed.events.start_ns.tolist() == [1669783687464181000]
    assert parsed.events.dur_ns.tolist() == [45000]
    assert parsed.clock.startswith("trace clock")


def test_relative_float_with_base_time(tmp_path: Path) -> None:
    # Kineto ≥ 2.x: ts relative to baseTimeNanoseconds with nanosecond digits.
    body = (
        '{"baseTimeNanoseconds": 1711964646000000000, "traceEvents": ['
        '{"ph": "X", "cat": "cpu_op", "name": "a", "ts": 1234.567, "dur": 0.001,'
        ' "pid": 1, "tid": 1}]}'
    )
    parsed = parse_trace(_raw_trace(tmp_path, body))
    assert parsed.events.start_ns.tolist() == [1711964646000000000 + 1234567]
    assert parsed.events.dur_ns.tolist() == [1]
    assert parsed.clock == "baseTimeNanoseconds"


def test_large_fractional_floats_are_exact(tmp_path: Path) -> None:
    # 6.5e12 µs is past float64's exact range for ns: the decimal text is used instead.
    stamps = ["6520430063606.411", "6520430063606.412", "4458676388068.751", "7.5", "-3.25"]
    events = ",".join(
        f'{{"ph":"X","cat":"cpu_op","name":"a","ts":{s},"dur":1,"pid":1,"tid":1}}' for s in stamps
    )
    parsed = parse_trace(_raw_trace(tmp_path, f'{{"traceEvents":[{events}]}}'))
    expected = sorted([6520430063606411, 6520430063606412, 4458676388068751, 7500, -3250])
    assert parsed.events.start_ns.tolist() == expected
    assert parsed.events.start_ns.dtype == np.int64


def test_array_form_string_ids_and_ignored_events(tmp_path: Path) -> None:
    body = (
        '[{"ph":"X","cat":"cpu_op","name":"a","ts":1,"dur":2,"pid":"Spans","tid":"x"},'
        '{"ph":"B","name":"b","ts":1,"pid":1,"tid":1},{"ph":"E","ts":2,"pid":1,"tid":1},'
        '{"ph":"i","name":"mark","ts":3,"pid":1,"tid":1}]'
    )
    parsed = parse_trace(_raw_trace(tmp_path, body))
    assert len(parsed.events) == 1
    assert parsed.events.pid.tolist() == [-2]
    assert list(parsed.ignored.values()) == [2]
