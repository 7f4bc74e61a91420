"""Timestamps become exact int64 nanoseconds, whatever their JSON form; shapes and collective
sizes are kept compactly."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import orjson
import pytest

from analyzers.read.kineto import _BAD_SHAPES, parse_trace
from analyzers.read.kineto_events import BAD_SIZES
from tests.builders import cpu_op, shaped_op, write_trace
from tests.conftest import shared
from tracekit.core.trace_model import Events, ShapeTable, Signature


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


SHAPED = [
    shaped_op("aten::mm", 1, 5, [[4, 8], [8, 2]], ["c10::BFloat16", "c10::BFloat16"]),
    shaped_op("aten::add", 2, 1, [[4, 2], [], []], ["float", "Scalar", ""]),
    shaped_op("aten::mm", 10, 5, [[4, 8], [8, 2]], ["c10::BFloat16", "c10::BFloat16"]),
    # the same dims under another op: another signature (a signature names its op)
    shaped_op("aten::matmul", 9, 7, [[4, 8], [8, 2]], ["c10::BFloat16", "c10::BFloat16"]),
    shaped_op("aten::cat", 20, 1, [[[1, 2], [3, 2]], []], ["TensorList", "Scalar"]),
    shaped_op("aten::weird", 21, 1, [["x"]], ["float"]),  # a form not modelled: no shape
    cpu_op("aten::empty", 22, 1),  # recorded without shapes
]


@pytest.mark.parametrize("form", ["object.json.gz", "array.json", "object.json"])
def test_shapes_interned_per_rank(tmp_path: Path, form: str) -> None:
    path = tmp_path / f"t.{form}"
    if form.startswith("array"):
        path.write_bytes(orjson.dumps(SHAPED))
    else:
        write_trace(path, SHAPED, gz=form.endswith(".gz"))
    parsed = parse_trace(path, block=64)  # small blocks: signatures span chunks
    ev = parsed.events
    bf16 = ("c10::BFloat16", "c10::BFloat16")
    assert ev.shapes.signatures == (
        Signature("aten::mm", ((4, 8), (8, 2)), bf16),
        Signature("aten::add", ((4, 2), (), ()), ("float", "Scalar", "")),
        Signature("aten::matmul", ((4, 8), (8, 2)), bf16),
        Signature("aten::cat", (((1, 2), (3, 2)), ()), ("TensorList", "Scalar")),
    )
    # sorted by start: mm, add, matmul, mm, cat, weird, empty
    assert ev.shape_id.tolist() == [0, 1, 2, 0, 3, -1, -1]
    assert ev.shape_id.dtype == np.int32
    assert parsed.ignored == {_BAD_SHAPES: 1}
    assert (ev.msg_bytes == -1).all()
    # ids travel with their table through take() and the loader's name remapping
    assert ev.take(np.array([3])).shapes is ev.shapes
    assert ev.remap_names(np.arange(len(parsed.names), dtype=np.int32)).shapes is ev.shapes


def test_collective_message_bytes(tmp_path: Path) -> None:
    comms = {"In msg nelems": 4, "Out msg nelems": 16, "Group size": 4, "dtype": "BFloat16"}
    events = [
        shaped_op("record_param_comms", 1, 5, [[4]], ["c10::BFloat16"], **comms),
        shaped_op("record_param_comms", 2, 5, [[]], [""], **{**comms, "dtype": "Weird"}),
        shaped_op("record_param_comms", 3, 5, [[]], [""], **{"In msg nelems": 0, "dtype": "Byte"}),
        cpu_op("aten::mm", 4, 1),
        shaped_op("record_param_comms", 5, 1, [[]], [""], **{**comms, "In msg nelems": 2**62}),
        shaped_op("record_param_comms", 6, 1, [[]], [""], **{**comms, "In msg nelems": None}),
    ]
    parsed = parse_trace(write_trace(tmp_path / "t.json.gz", events))
    # all-gather of 4 → 16 bf16 elements: NCCL's size is the gathered output, 32 bytes;
    # unknown dtypes, absurd or missing counts are left out and counted, never an error
    assert parsed.events.msg_bytes.tolist() == [32, -1, 0, -1, -1, -1]
    assert parsed.ignored == {BAD_SIZES: 3}


def test_shapes_and_sizes_absent_take_no_memory(tmp_path: Path) -> None:
    events = [cpu_op("aten::mm", 2, 2), cpu_op("aten::mm", 1, 2)]  # sorted on the way
    ev = parse_trace(write_trace(tmp_path / "t.json.gz", events)).events
    assert ev.shapes == ShapeTable()
    assert ev.shape_id.tolist() == [-1, -1] and ev.msg_bytes.tolist() == [-1, -1]
    # constant read-only views: no bytes per event where a trace holds no shapes or sizes
    assert ev.shape_id.strides == ev.msg_bytes.strides == (0,)
    assert ev.take(np.array([1])).msg_bytes.tolist() == [-1]


def test_real_trace_shapes() -> None:
    parsed = parse_trace(shared("hf_h100_qwen1.5_0.5b/trace.json.gz"))
    ev = parsed.events
    assert int((ev.shape_id >= 0).sum()) == 4186  # every cpu_op with 'Input Dims'
    assert len(ev.shapes.signatures) == 128  # distinct (op, dims, types)
    mm = [s for s in ev.shapes.signatures if s.op == "aten::mm"]
    assert Signature("aten::mm", ((8944, 1024), (1024, 1024)), ("c10::BFloat16",) * 2) in mm


def test_escaped_keys_and_absent_columns(tmp_path: Path) -> None:
    # JSON may escape a key's characters: "Input\u0020Dims" is still 'Input Dims'
    body = (
        '{"traceEvents": [{"ph":"X","cat":"cpu_op","name":"aten::mm","ts":1,"dur":2,"pid":1,'
        '"tid":1,"args":{"Input\\u0020Dims":[[2,3],[3,4]],"Input type":["float","float"]}}]}'
    )
    ev = parse_trace(_raw_trace(tmp_path, body)).events
    assert ev.shape_id.tolist() == [0] and ev.shapes.signatures[0].dims == ((2, 3), (3, 4))
    assert ev.msg_bytes.tolist() == [-1]


def test_constant_columns_pickle_as_constants(tmp_path: Path) -> None:
    events = [*SHAPED[:2], cpu_op("aten::mm", 30, 1)]
    ev = parse_trace(write_trace(tmp_path / "t.json.gz", events)).events
    back = pickle.loads(pickle.dumps(ev))  # as parse workers send it
    assert back.msg_bytes.strides == (0,) and back.msg_bytes.tolist() == [-1, -1, -1]
    assert back.shape_id.tolist() == [0, 1, -1] and back.shapes == ev.shapes
    n, zero = 100_000, np.zeros(100_000, dtype=np.int64)
    big = Events(zero, zero, zero.astype(np.int8), zero.astype(np.int32), *[zero] * 6)
    assert len(pickle.dumps(big)) < n * (8 * 8 + 1 + 4) + 10_000  # nothing for the constants
