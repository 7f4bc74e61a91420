"""Property test: mutated real traces give a report or a TracekitError, nothing else.

Every real trace is mutated: the in-repo sample and each trace under ../shared/traces
(found by ``tests.real_traces``: a trace added there is fuzzed with no code change), big
ones reduced first to a few hundred events (rows of an Nsight Systems export) so that each
example stays quick; each run of several rank files with one rank mutated. Mutations drawn
here (truncation, bytes, fields of any type, events deleted or duplicated, keys dropped)
and every kind of the fuzz benchmark from a drawn seed (``tests/fuzz_mutations.py``). A
bounded number of examples per trace and test (``TRACEKIT_FUZZ_EXAMPLES``, default 25);
benchmarks/fuzz_traces.py runs thousands.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracekit
from tests.conftest import REPO, SAMPLE_TP2, SHARED_TRACES
from tests.fuzz_mutations import ARGS, FIELDS, TOP, file_name, mutate_kineto, mutate_nsys
from tests.real_traces import (
    ABSENT,
    label,
    rank_files,
    reduced_doc,
    reduced_sqlite,
    run_folders,
    trace_files,
)
from tracekit.core.errors import TracekitError
from tracekit.render.json import render as render_json

EVENTS = 300  # events kept of a big Kineto trace
ROWS = 150  # rows kept per table of an Nsight Systems export
SAMPLE = next((SAMPLE_TP2 / "traces").glob("*rank0*.json.gz"))
#: the in-repo sample (always here) and every shared trace (where ../shared/traces is)
TRACES = [SAMPLE, *trace_files()]


def _param(path: Path) -> Any:
    return pytest.param(path, id=label(path, REPO if REPO in path.parents else SHARED_TRACES))


KINETO = [_param(p) for p in TRACES if p.suffix != ".sqlite"]
NSYS = [_param(p) for p in TRACES if p.suffix == ".sqlite"]
RUNS = [_param(f) for f in run_folders() if len(rank_files(f)) > 1] or [
    pytest.param(None, id="absent", marks=pytest.mark.skip(reason=ABSENT))
]

JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["0x1f", "12", "-3", "1e3", "4.5", "nan", " 7 "]),  # numbers as text
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
TOP_KEYS = ["traceEvents", *TOP]
SETTINGS = settings(
    max_examples=int(os.environ.get("TRACEKIT_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@functools.cache
def _doc_bytes(path: Path) -> bytes:
    return orjson.dumps(reduced_doc(path, EVENTS))


@functools.cache
def _sqlite(path: Path) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return reduced_sqlite(path, Path(tmp) / "r.sqlite", ROWS).read_bytes()


def _check(path: Path) -> None:
    try:
        analysis = tracekit.analyze(path, jobs=1)
    except TracekitError as exc:
        assert str(path) in str(exc)
        assert "\n" not in str(exc)
        return
    for rank in analysis.ranks:
        assert sum(rank.buckets.values()) == rank.window_ns
    render_json(analysis)  # the schema is validated on write


def _write(tmp: Path, name: str, data: bytes, gz: bool = False) -> Path:
    path = tmp / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    return path


# -- Kineto traces ---------------------------------------------------------------------------


@pytest.mark.parametrize("trace", KINETO)
@SETTINGS
@given(data=st.data(), gz=st.booleans())
def test_truncated(tmp_path: Path, trace: Path, data: st.DataObject, gz: bool) -> None:
    base = _doc_bytes(trace)
    cut = data.draw(st.integers(0, len(base)))
    _check(_write(tmp_path, "t.json", base[:cut], gz))


@pytest.mark.parametrize("trace", KINETO)
@SETTINGS
@given(data=st.data())
def test_byte_flips(tmp_path: Path, trace: Path, data: st.DataObject) -> None:
    raw = bytearray(_doc_bytes(trace))
    offsets = st.integers(0, len(raw) - 1)
    for offset, value in data.draw(
        st.lists(st.tuples(offsets, st.integers(0, 255)), min_size=1, max_size=8)
    ):
        raw[offset] = value
    _check(_write(tmp_path, "t.json", bytes(raw)))


@pytest.mark.parametrize("trace", KINETO)
@SETTINGS
@given(data=st.data(), drop_key=st.sampled_from([None, *TOP_KEYS]))
def test_field_mutations(
    tmp_path: Path, trace: Path, data: st.DataObject, drop_key: str | None
) -> None:
    """Fields of any type (ids as text, lists for numbers), events deleted or duplicated,
    top-level keys dropped or of another type."""
    doc: dict[str, Any] = orjson.loads(_doc_bytes(trace))
    events: list[Any] = doc["traceEvents"]
    index = st.integers(0, max(len(events) - 1, 0))
    for i, field, value in data.draw(
        st.lists(
            st.tuples(index, st.sampled_from(FIELDS + ARGS), JSON_VALUES), min_size=1, max_size=6
        )
    ):
        if not events or not isinstance(events[i], dict):
            continue
        if field in ARGS:
            args = events[i].get("args")
            events[i]["args"] = {**(args if isinstance(args, dict) else {}), field: value}
        else:
            events[i][field] = value
    for op, i in data.draw(st.lists(st.tuples(st.sampled_from(["del", "dup"]), index), max_size=3)):
        if i < len(events):
            events.insert(i, events[i]) if op == "dup" else events.pop(i)
    if drop_key:
        doc.pop(drop_key, None)
    if data.draw(st.booleans()):
        doc[data.draw(st.sampled_from(TOP_KEYS[1:]))] = data.draw(JSON_VALUES)
    _check(_write(tmp_path, "t.json", json.dumps(doc).encode(), gz=True))  # ints > 64 bits


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 1e300, -1e300, "1e300", "9" * 5000])
def test_out_of_range_timestamps(tmp_path: Path, value: float | str) -> None:
    doc = orjson.loads(_doc_bytes(SAMPLE))
    doc["traceEvents"][5]["ts"] = value
    _check(_write(tmp_path, "t.json", json.dumps(doc).encode()))


# -- every kind of the fuzz benchmark (tests/fuzz_mutations.py), from a drawn seed ----------


@pytest.mark.parametrize("trace", KINETO)
@SETTINGS
@given(seed=st.integers(0, 2**32))
def test_kineto_mutations(tmp_path: Path, trace: Path, seed: int) -> None:
    """Semantic swaps (categories, names the stages match, linking ids, collective args,
    shapes, overlapping times), wrong nesting, extreme numbers, ..."""
    _kind, data = mutate_kineto(random.Random(seed), _doc_bytes(trace))
    _check(_write(tmp_path, file_name(data), data))


@pytest.mark.parametrize("trace", NSYS)
@SETTINGS
@given(seed=st.integers(0, 2**32))
def test_nsys_mutations(tmp_path: Path, trace: Path, seed: int) -> None:
    """The export truncated or overwritten, cells of another type (SQLite keeps any type in
    any column), huge or negative times, rows deleted or duplicated, columns or tables gone."""
    path = tmp_path / "t.sqlite"
    mutate_nsys(random.Random(seed), _sqlite(trace), path)
    _check(path)


@pytest.mark.parametrize("folder", RUNS)
@SETTINGS
@given(seed=st.integers(0, 2**32), data=st.data())
def test_a_mutated_rank_in_its_run(
    tmp_path: Path, folder: Path, seed: int, data: st.DataObject
) -> None:
    """A run of several rank files, one of them mutated: the run-level stages (cross-rank
    collectives, the common window) meet a broken rank, or the run goes on without it."""
    run = tmp_path / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    files = rank_files(folder)
    broken = data.draw(st.sampled_from(files))
    for file in files:
        stem = file.name.split(".")[0]
        if file == broken:
            _kind, raw = mutate_kineto(random.Random(seed), _doc_bytes(file))
            (run / (stem + file_name(raw)[1:])).write_bytes(raw)
        else:
            (run / (stem + ".json")).write_bytes(_doc_bytes(file))
    _check(run)
