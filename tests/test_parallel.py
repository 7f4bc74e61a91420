"""Ranks parsed in a process pool give the same Trace, and Analysis, as a sequential run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from analyzers.engine.driver import analyze_trace
from analyzers.engine.process_pool import default_jobs, parse_all
from analyzers.read.loader import load
from tests.builders import annotation, cpu_op, kernel, runtime, write_trace
from tests.conftest import REPO, shared
from tracekit.core.analysis import to_json
from tracekit.core.errors import TracekitError
from tracekit.core.trace_model import Trace


def _same(a: Trace, b: Trace) -> None:
    assert a.names.names == b.names.names
    assert (a.source, a.warnings, a.manifest, a.run_dir) == (
        b.source,
        b.warnings,
        b.manifest,
        b.run_dir,
    )
    assert len(a.ranks) == len(b.ranks)
    for x, y in zip(a.ranks, b.ranks, strict=True):
        assert (x.id, x.path, x.clock, x.devices, x.device_names) == (
            y.id,
            y.path,
            y.clock,
            y.devices,
            y.device_names,
        )
        assert (x.metadata, x.ignored) == (y.metadata, y.ignored)
        for column in x.events.__dataclass_fields__:
            assert np.array_equal(getattr(x.events, column), getattr(y.events, column)), column


def _ranks(folder: Path, count: int) -> Path:
    for r in range(count):
        events = [
            annotation(f"execute_context_1({10 + r})_generation_0(0)", 0, 500),
            cpu_op(f"aten::mm rank{r % 3}", 10, 100),
            runtime("cudaLaunchKernel", 20, 5, corr=r),
            kernel("ampere_sgemm_128x64_nn", 30, 200 + 10 * r, corr=r),
            kernel("ncclKernel_AllReduce_RING_LL_Sum_float", 260, 50 + r, corr=99),
        ]
        write_trace(folder / f"rank-{r}.json.gz", events, rank=r, world=count)
    return folder


def test_pool_equals_sequential_trace_and_analysis(tmp_path: Path) -> None:
    folder = _ranks(tmp_path / "run", 5)
    (folder / "rank-9.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")  # one unreadable
    sequential, pooled = load(folder, jobs=1), load(folder, jobs=2)
    _same(sequential, pooled)
    assert any("rank-9.json.gz" in w for w in pooled.warnings)
    assert to_json(analyze_trace(pooled)) == to_json(analyze_trace(sequential))
    _same(sequential, load(folder))  # the default: one job per core


def test_progress_reports_every_file_then_the_end(tmp_path: Path) -> None:
    folder = _ranks(tmp_path / "run", 3)
    seen: list[tuple[int, int, str]] = []
    parse_all(sorted(folder.iterdir()), 2, lambda d, t, n: seen.append((d, t, n)))
    assert sorted(d for d, _, _ in seen) == [1, 2, 3, 3]
    assert seen[-1] == (3, 3, "")


def test_a_lone_bad_file_raises_whatever_the_jobs(tmp_path: Path) -> None:
    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    for jobs in (1, 4):
        with pytest.raises(TracekitError, match="invalid JSON"):
            load(bad, jobs=jobs)


def test_worker_errors_come_back_as_tracekit_errors(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("")
    write_trace(tmp_path / "b.json", [cpu_op("aten::mm", 0, 10)], gz=False)
    outcomes = parse_all([tmp_path / "a.json", tmp_path / "b.json"], jobs=2)
    assert isinstance(outcomes[0], TracekitError)
    assert str(outcomes[0]) == f"{tmp_path / 'a.json'}: empty file"
    assert not isinstance(outcomes[1], TracekitError)
    assert default_jobs(1) == 1


def _make_large_trace() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_large_trace", REPO / "benchmarks" / "make_large_trace.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_eight_real_ranks_with_two_jobs_equal_sequential(tmp_path: Path) -> None:
    source = shared("hta_2rank/rank-0.json.gz")
    _make_large_trace().make(source, tmp_path / "ranks8", 1, ranks=8)
    sequential, pooled = load(tmp_path / "ranks8", jobs=1), load(tmp_path / "ranks8", jobs=2)
    _same(sequential, pooled)
    assert [r.id.rank for r in pooled.ranks] == list(range(8))
    assert to_json(analyze_trace(pooled)) == to_json(analyze_trace(sequential))
