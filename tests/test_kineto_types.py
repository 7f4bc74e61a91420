"""A field of another type than Kineto's is read, never refused: real traces are the
specification (ROCm 6.2's Kineto writes ``"stream": "0x0"``). A number in any form becomes
that number; anything else is unknown and counted among the trace's ignored values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tracekit
from analyzers.read.kineto import _BAD_SHAPES, parse_trace
from analyzers.read.kineto_events import BAD_GROUP, BAD_TIME
from analyzers.read.kineto_values import MAX_NUMEL, as_int, value_ns
from tests.builders import cpu_op, kernel, shaped_op, write_trace
from tracekit.core.errors import TracekitError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, 7),
        (7.0, 7),
        ("7", 7),
        (" -7 ", -7),
        ("0x1f", 31),
        ("0X0", 0),
        ("1e3", 1000),
        ("12.0", 12),
        (7.5, None),
        ("7.5", None),
        ("abc", None),
        ("", None),
        ("nan", None),
        ("inf", None),
        (None, None),
        (True, None),
        ([7], None),
        ({"v": 7}, None),
        (2**63, None),
        (-(2**63), -(2**63)),
        ("9" * 5000, None),  # beyond Python's int-from-text limit: unknown, not an error
    ],
)
def test_as_int(value: Any, expected: int | None) -> None:
    assert as_int(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, 12_000),
        (1.5, 1_500),
        ("1234.5678", 1_234_568),
        ("4203669603438.301", 4_203_669_603_438_301),  # exact from the text
        ("soon", None),
        ("NaN", None),
        (None, None),
        ([1], None),
        (False, None),
    ],
)
def test_value_ns(value: Any, expected: int | None) -> None:
    assert value_ns(value) == expected


@pytest.mark.parametrize("value", ["1e300", 1e300, 2**63])
def test_value_ns_out_of_range_is_an_error(value: Any) -> None:
    with pytest.raises(ValueError, match="beyond"):
        value_ns(value)


def _kernel(**args: Any) -> dict[str, Any]:
    event = kernel("k", 10, 5)
    event["args"] = args
    return event


def test_ids_of_other_types_are_read(tmp_path: Path) -> None:
    events = [
        _kernel(stream="0x0", correlation="12", device=1.0, **{"External id": " 7 "}),
        _kernel(stream=3, correlation="abc", device=None),  # text: unknown, counted
        _kernel(stream=[1], correlation=2.5),  # a list, a fraction: unknown, counted
        {**kernel("k", 30, 1), "pid": "3", "tid": 4.0, "name": 42, "cat": None},
        {**kernel("k", 40, 1), "args": ["not", "an", "object"]},
    ]
    parsed = parse_trace(write_trace(tmp_path / "t.json.gz", events))
    ev = parsed.events
    assert ev.stream.tolist()[:3] == [0, 3, -1]
    assert ev.correlation.tolist()[:3] == [12, -1, -1]
    assert ev.device.tolist()[:2] == [1, -1]
    assert ev.external_id.tolist()[0] == 7
    assert (ev.pid[3], ev.tid[3]) == (3, 4)
    assert "42" in parsed.names
    assert parsed.ignored == {
        "'correlation' args not readable as integers: taken as unknown": 2,
        "'stream' args not readable as integers: taken as unknown": 1,
        "event 'args' that are not an object: left out": 1,
    }


def test_times_as_text_are_read_and_others_leave_their_event_out(tmp_path: Path) -> None:
    events = [
        {**cpu_op("a", 0, 0), "ts": "1234.5678", "dur": "10"},
        {**cpu_op("b", 0, 0), "ts": "soon"},
        {**cpu_op("c", 0, 0), "ts": 2000, "dur": None},
        cpu_op("d", 3000, 1),
    ]
    parsed = parse_trace(write_trace(tmp_path / "t.json.gz", events))
    assert parsed.events.start_ns.tolist() == [1_234_568, 3_000_000]
    assert parsed.events.dur_ns.tolist() == [10_000, 1_000]
    assert parsed.ignored == {BAD_TIME: 2}


def test_collective_args_as_text(tmp_path: Path) -> None:
    comms: dict[str, Any] = {"In msg nelems": "4", "Out msg nelems": 16.0, "dtype": "BFloat16"}
    comms["Group size"] = "4"
    text: dict[str, Any] = {"Group size": "two"}
    events = [
        shaped_op("record_param_comms", 1, 5, [[4]], ["c10::BFloat16"], **comms),
        shaped_op("record_param_comms", 2, 5, [[4]], ["float"], **text),
    ]
    parsed = parse_trace(write_trace(tmp_path / "t.json.gz", events))
    assert parsed.events.msg_bytes.tolist() == [32, -1]
    assert parsed.events.group_size.tolist() == [4, -1]
    assert parsed.ignored == {BAD_GROUP: 1}


def test_shapes_with_numbers_of_other_types(tmp_path: Path) -> None:
    events = [
        shaped_op("aten::mm", 1, 1, [[4.0, "8"], [8, 2]], ["float", "float"]),
        shaped_op("aten::mm", 2, 1, [[4, -1], [8, 2]], ["float", "float"]),  # not a shape
        shaped_op("aten::mm", 3, 1, [[MAX_NUMEL, 2], [8, 2]], ["float", "float"]),  # too big
    ]
    parsed = parse_trace(write_trace(tmp_path / "t.json.gz", events))
    (signature,) = parsed.events.shapes.signatures
    assert signature.dims == ((4, 8), (8, 2))
    assert parsed.ignored == {_BAD_SHAPES: 2}


def test_top_level_keys_of_other_types(tmp_path: Path) -> None:
    extra = {
        "baseTimeNanoseconds": "1711964646000000000",
        "distributedInfo": {"rank": "3", "world_size": 4.0},
        "deviceProperties": {"id": 0},  # not a list: left out
    }
    path = write_trace(tmp_path / "t.json.gz", [kernel("k", 1, 1)], extra=extra)
    parsed = parse_trace(path)
    assert parsed.clock == "baseTimeNanoseconds"
    assert parsed.events.start_ns.tolist() == [1711964646000001000]
    assert parsed.ignored == {"top-level 'deviceProperties' of a type not modelled: left out": 1}
    (rank,) = tracekit.analyze(path).ranks
    assert (rank.rank, rank.identity.world_size) == (3, 4)


def test_a_trace_of_unreadable_events_says_why_it_is_empty(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.json.gz", [{**cpu_op("a", 0, 1), "ts": "soon"}])
    with pytest.raises(TracekitError, match="1 complete events whose 'ts' or 'dur'"):
        parse_trace(path)
