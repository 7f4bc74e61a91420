"""Rank identity: distributedInfo, then the file name, then the manifest; no duplicates."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

import tracekit
from tests.builders import cpu_op, write_trace
from tracekit.core import rundir
from tracekit.core.errors import TracekitError
from tracekit.core.layout import Layout
from tracekit.core.rundir import fields_from_name

OPS = [cpu_op("aten::mm", 0, 10)]


def test_fields_from_vllm_names() -> None:
    assert fields_from_name("dp1_pp0_tp3_dcp0_ep3_rank3.1773.pt.trace.json.gz") == {
        "dp": 1,
        "pp": 0,
        "tp": 3,
        "ep": 3,
        "rank": 3,
    }
    assert fields_from_name("rank-12.json.gz") == {"rank": 12}
    assert fields_from_name("worker_rank1.pt.trace.json.gz") == {"rank": 1}
    assert fields_from_name("trace.json.gz") == {}


def test_distributed_info_wins_over_file_name(tmp_path: Path) -> None:
    write_trace(tmp_path / "rank-5.json.gz", OPS, rank=0, world=2)
    write_trace(tmp_path / "rank-6.json.gz", OPS, rank=1, world=2)
    trace = tracekit.load(tmp_path)
    assert [(r.id.rank, r.id.source) for r in trace.ranks] == [
        (0, "distributedInfo"),
        (1, "distributedInfo"),
    ]
    assert trace.warnings == ()


def test_dp_replicas_with_same_rank_are_distinct_by_name(tmp_path: Path) -> None:
    write_trace(tmp_path / "dp0_pp0_tp0_rank0.pt.trace.json.gz", OPS, rank=0)
    write_trace(tmp_path / "dp1_pp0_tp0_rank0.pt.trace.json.gz", OPS, rank=0)
    trace = tracekit.load(tmp_path)
    assert [(r.id.dp, r.id.rank) for r in trace.ranks] == [(0, 0), (1, 0)]
    assert trace.ranks[0].id.source == "distributedInfo+file name"


def test_duplicate_identity_is_an_error(tmp_path: Path) -> None:
    write_trace(tmp_path / "a.json.gz", OPS, rank=3)
    write_trace(tmp_path / "b.json.gz", OPS, rank=3)
    with pytest.raises(TracekitError, match="duplicate rank identity rank 3"):
        tracekit.load(tmp_path)


def test_anonymous_files_numbered_in_order_and_missing_ranks(tmp_path: Path) -> None:
    write_trace(tmp_path / "a.json.gz", OPS)
    write_trace(tmp_path / "b.json", OPS, gz=False)
    trace = tracekit.load(tmp_path)
    assert [(r.id.rank, r.id.source) for r in trace.ranks] == [(0, "file order"), (1, "file order")]
    write_trace(tmp_path / "more" / "rank-1.json.gz", OPS, rank=1, world=4)
    assert "1 of 4 ranks" in tracekit.load(tmp_path / "more").warnings[0]


def test_run_directory_uses_manifest_last(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_trace(run / rundir.TRACES / "w0.pt.trace.json.gz", OPS)
    write_trace(run / rundir.TRACES / "w1.pt.trace.json.gz", OPS, rank=7)
    (run / rundir.STEPS).mkdir()
    (run / rundir.STEPS / "engine0.jsonl").write_bytes(
        msgspec.json.encode(rundir.StepRecord(ts_ns=5, running=2)) + b"\n" + b'{"ts_ns": 9, "ru'
    )
    manifest = rundir.Manifest(
        tracekit_version="0.1.0",
        status="interrupted",
        exit_code=130,
        layout=Layout(pp=2),
        ranks=[
            rundir.RankEntry("w0.pt.trace.json.gz", rank=0, pp=0),
            rundir.RankEntry("w1.pt.trace.json.gz", rank=1, pp=1),
            rundir.RankEntry("w2.pt.trace.json.gz", rank=2, pp=1),
        ],
    )
    rundir.write_manifest(run, manifest)
    trace = tracekit.load(run)
    ids = [(r.id.rank, r.id.pp, r.id.source) for r in trace.ranks]
    assert ids == [(0, 0, "manifest"), (7, 1, "distributedInfo+manifest")]
    assert any("w2.pt.trace.json.gz" in w for w in trace.warnings)
    assert any("partial run" in w for w in trace.warnings)
    assert trace.run_dir == str(run)
    steps = rundir.read_steps(run)  # the torn last line of a killed writer is skipped
    assert [(s.ts_ns, s.running) for s in steps] == [(5, 2)]


def test_manifest_round_trip_and_validation(tmp_path: Path) -> None:
    manifest = rundir.Manifest(tracekit_version="0.1.0", status="complete", argv=["vllm"])
    rundir.write_manifest(tmp_path, manifest)
    assert rundir.read_manifest(tmp_path) == manifest
    (tmp_path / rundir.MANIFEST).write_text('{"tracekit_version": "x", "status": "done"}')
    with pytest.raises(TracekitError, match="invalid manifest"):
        rundir.read_manifest(tmp_path)
