"""Property test: mutated real traces give a report or a TracekitError, nothing else."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracekit
from tests.conftest import SAMPLE_TP2
from tracekit.errors import TracekitError


def _base_doc() -> dict[str, Any]:
    path = next((SAMPLE_TP2 / "traces").glob("*rank0*.json.gz"))
    doc: dict[str, Any] = orjson.loads(gzip.decompress(path.read_bytes()))
    doc["traceEvents"] = doc["traceEvents"][:600]  # a real prefix, small enough to be quick
    return doc


BASE = _base_doc()
BASE_BYTES = orjson.dumps(BASE)
JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
FIELDS = st.sampled_from(["ph", "cat", "name", "ts", "dur", "pid", "tid", "args"])


def _check(tmp: Path, data: bytes, gz: bool) -> None:
    path = tmp / ("t.json.gz" if gz else "t.json")
    path.write_bytes(gzip.compress(data) if gz else data)
    try:
        analysis = tracekit.analyze(path)
    except TracekitError as exc:
        assert str(path) in str(exc)
        assert "\n" not in str(exc)
        return
    for rank in analysis.ranks:
        assert sum(rank.buckets.values()) == rank.window_ns


SETTINGS = settings(
    max_examples=int(os.environ.get("TRACEKIT_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(cut=st.integers(0, len(BASE_BYTES)), gz=st.booleans())
def test_truncated(tmp_path: Path, cut: int, gz: bool) -> None:
    _check(tmp_path, BASE_BYTES[:cut], gz)


@SETTINGS
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(BASE_BYTES) - 1), st.integers(0, 255)), min_size=1, max_size=8
    )
)
def test_byte_flips(tmp_path: Path, edits: list[tuple[int, int]]) -> None:
    data = bytearray(BASE_BYTES)
    for offset, value in edits:
        data[offset] = value
    _check(tmp_path, bytes(data), gz=False)


@SETTINGS
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(BASE["traceEvents"]) - 1), FIELDS, JSON_VALUES),
        min_size=1,
        max_size=5,
    ),
    drop_key=st.sampled_from([None, "traceEvents", "baseTimeNanoseconds", "distributedInfo"]),
)
def test_field_mutations(
    tmp_path: Path, edits: list[tuple[int, str, Any]], drop_key: str | None
) -> None:
    doc = orjson.loads(BASE_BYTES)
    for index, field, value in edits:
        doc["traceEvents"][index][field] = value
    if drop_key:
        doc.pop(drop_key, None)
    _check(tmp_path, json.dumps(doc).encode(), gz=True)  # stdlib: ints beyond 64 bits


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 1e300, -1e300])
def test_out_of_range_timestamps(tmp_path: Path, value: float) -> None:
    doc = orjson.loads(BASE_BYTES)
    doc["traceEvents"][5]["ts"] = value
    _check(tmp_path, json.dumps(doc).encode(), gz=False)
