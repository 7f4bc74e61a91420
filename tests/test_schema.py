"""The JSON result: versioned schema, validated on write and on read."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import msgspec
import pytest

import tracekit
from tests.conftest import SAMPLE_TP2
from tracekit.core.analysis import SCHEMA_VERSION, from_json, json_schema, to_json
from tracekit.core.buckets import BUCKETS
from tracekit.core.errors import TracekitError

SCHEMA_FILE = Path(tracekit.__file__).with_name("schema") / "analysis.schema.json"


def test_published_schema_matches_the_structs() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema(), (
        "regenerate with: python -m tracekit.core.analysis"
    )


def test_output_validates_against_the_schema() -> None:
    doc = json.loads(to_json(tracekit.analyze(SAMPLE_TP2)))
    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
    assert doc["schema_version"] == SCHEMA_VERSION
    for rank in doc["ranks"]:
        assert {"rank", "window_start_ns", "window_ns", "buckets"} <= set(rank)
        assert set(rank["buckets"]) == set(BUCKETS)
        assert sum(rank["buckets"].values()) == rank["window_ns"]
    assert {"name", "scores", "evidence", "advice"} <= set(doc["regime"])


def test_round_trip() -> None:
    analysis = tracekit.analyze(SAMPLE_TP2)
    assert from_json(to_json(analysis)) == analysis


def test_reader_rejects_broken_invariant_and_versions() -> None:
    doc = json.loads(to_json(tracekit.analyze(SAMPLE_TP2)))
    doc["ranks"][0]["buckets"]["idle"] += 5_000
    with pytest.raises(TracekitError, match="buckets sum to"):
        from_json(json.dumps(doc).encode(), "x.json")
    doc["schema_version"] = 99
    with pytest.raises(TracekitError, match="schema_version 99"):
        from_json(json.dumps(doc).encode(), "x.json")
    with pytest.raises(TracekitError, match="does not match schema"):
        from_json(b'{"schema_version": 2, "ranks": 3}', "x.json")
    with pytest.raises(TracekitError, match="schema_version 1; this tracekit reads version 2"):
        from_json(b'{"schema_version": 1}', "x.json")


def test_writer_refuses_a_broken_invariant() -> None:
    analysis = tracekit.analyze(SAMPLE_TP2)
    rank = analysis.ranks[0]
    broken = msgspec.structs.replace(rank, buckets={**rank.buckets, "idle": -1})
    with pytest.raises(TracekitError):
        to_json(msgspec.structs.replace(analysis, ranks=[broken]))


def test_pandas_views() -> None:
    analysis = tracekit.analyze(SAMPLE_TP2)
    frame = analysis.buckets_frame()
    assert list(frame.columns) == ["rank", "label", "window_ns", *BUCKETS]
    assert (frame[list(BUCKETS)].sum(axis=1) == frame["window_ns"]).all()
    assert len(analysis.steps_frame()) == sum(len(r.steps) for r in analysis.ranks) > 0
    assert "_C::onednn_mm" in set(analysis.ops_frame()["name"])
    events = tracekit.load(SAMPLE_TP2).events_frame(0)
    assert {"name", "kind", "start_ns", "dur_ns"} <= set(events.columns)
    assert (events["kind"] == "cpu_op").sum() > 1000
