"""Per-rank stages in worker processes give the Analysis of the sequential run, exactly."""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from analyzers.engine.driver import Executor, analyze, analyze_found, analyze_trace, pool_executor
from analyzers.engine.file_jobs import FileJob, read_and_analyze
from analyzers.engine.process_pool import Progress
from analyzers.read.discover import discover
from analyzers.read.loader import load
from analyzers.read.run_facts import manifest_facts
from tests.builders import cpu_op, write_trace
from tests.conftest import REPO
from tests.test_parallel import _make_large_trace, _ranks
from tests.test_roofline import H100, gpu_run
from tracekit.core import rundir
from tracekit.core.analysis import ROOFLINE, to_json
from tracekit.core.errors import TracekitError


def sequential(path: Path) -> bytes:
    """The reference: load everything here, run the stages rank by rank, merge."""
    return to_json(analyze_trace(load(path, jobs=1)))


def test_stages_in_the_pool_equal_the_sequential_analysis(tmp_path: Path) -> None:
    folder = _ranks(tmp_path / "run", 5)
    (folder / "rank-9.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")  # one unreadable
    pooled = analyze(folder, jobs=2)
    assert any("rank-9.json.gz" in w for w in pooled.warnings)
    assert to_json(pooled) == sequential(folder)
    assert to_json(analyze(folder, jobs=1)) == sequential(folder)


@pytest.mark.parametrize("run", ["vllm_cpu_tp2", "vllm_cpu_pp2", "vllm_cpu_moe_tp2"])
def test_real_vllm_runs_pooled_equal_sequential(run: str) -> None:
    path = REPO / "sample_traces" / run
    analysis = analyze(path, jobs=2)
    assert to_json(analysis) == sequential(path)
    assert analysis.collectives is not None  # cross-rank reports built from the digests


def test_eight_real_ranks_pooled_equal_sequential(tmp_path: Path) -> None:
    from tests.conftest import shared

    _make_large_trace().make(shared("hta_2rank/rank-0.json.gz"), tmp_path / "r8", 1, ranks=8)
    pooled = analyze(tmp_path / "r8", jobs=2)
    assert [r.rank for r in pooled.ranks] == list(range(8))
    assert to_json(pooled) == sequential(tmp_path / "r8")


def test_anonymous_ranks_are_numbered_after_the_pool(tmp_path: Path) -> None:
    for name in ("b.json", "a.json", "c.json"):  # no rank anywhere: file order numbers them
        write_trace(tmp_path / name, [cpu_op(f"op {name}", 0, 10)], gz=False)
    pooled = analyze(tmp_path, jobs=2)
    assert [(r.rank, Path(r.path).name) for r in pooled.ranks] == [
        (0, "a.json"),
        (1, "b.json"),
        (2, "c.json"),
    ]
    assert [r.identity.source for r in pooled.ranks] == ["file order"] * 3
    assert to_json(pooled) == sequential(tmp_path)


def test_duplicate_identities_are_an_error_in_the_pool(tmp_path: Path) -> None:
    for name in ("x.json", "y.json"):
        write_trace(tmp_path / name, [cpu_op("op", 0, 10)], rank=3, world=2, gz=False)
    with pytest.raises(TracekitError, match="duplicate rank identity"):
        analyze(tmp_path, jobs=2)


def counting(calls: list[str], jobs: int) -> Executor:
    inner = pool_executor(jobs)

    def run(
        fn: Callable[[FileJob], Any], items: Sequence[FileJob], progress: Progress | None
    ) -> list[Any]:
        calls.append(f"{fn.__name__} x{len(items)}")
        return list(inner(fn, items, progress))

    return run


def test_a_rank_without_device_names_takes_the_runs_peaks_and_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = gpu_run(tmp_path, H100)  # rank 0 names its H100
    traces = run / rundir.TRACES
    second = traces / "dp0_pp0_tp1_rank1.pt.trace.json.gz"
    (second).write_bytes((traces / "dp0_pp0_tp0_rank0.pt.trace.json.gz").read_bytes())
    # the same events without deviceProperties: only the run's other rank says what GPU it is
    from tests.test_roofline import gpu_events

    write_trace(second, gpu_events(), base_ns=0)
    calls: list[str] = []
    pooled, _ = analyze_found(discover(run), counting(calls, 2))
    assert calls == ["read_file x2", "analyze_file x2"]  # peaks settled between the rounds
    assert [r.compute_hbm_basis for r in pooled.ranks] == [ROOFLINE, ROOFLINE]
    assert pooled.hardware is not None and pooled.hardware.name == "H100 SXM"
    assert to_json(pooled) == sequential(run)
    # each file is parsed once (in this process, to count): round 2 reads the spill
    from analyzers.engine import file_jobs

    parsed: list[str] = []
    real = file_jobs.parse_file

    def parse_file(path: Path) -> Any:
        parsed.append(path.name)
        return real(path)

    monkeypatch.setattr(file_jobs, "parse_file", parse_file)
    assert to_json(analyze(run, jobs=1)) == to_json(pooled)
    assert sorted(parsed) == sorted(p.name for p in traces.iterdir())


def test_what_a_worker_sends_back_is_small(tmp_path: Path) -> None:
    """A digest carries the rank's result and a few columns, never the event table."""
    from tests.conftest import shared

    source = shared("hta_v100_allreduce/rank-1.json.gz")
    found = discover(source)
    job = FileJob(found.files[0], manifest_facts(None, None), None)
    (outcome,) = pool_executor(1)(read_and_analyze, [job], None)
    assert not isinstance(outcome, TracekitError)
    sent = len(pickle.dumps(outcome))
    assert sent < source.stat().st_size / 20, sent  # vs the gzip file: 216k events


def test_no_room_for_the_spill_is_one_error_not_a_partial_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyzers.engine import file_jobs

    folder = _ranks(tmp_path / "run", 2)

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(file_jobs.pickle, "dump", full)
    with pytest.raises(TracekitError, match=r"No space left on device\); point TMPDIR at"):
        analyze(folder, jobs=1)

    def read_only(*args: Any, **kwargs: Any) -> str:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(TracekitError, match="cannot make a folder for the parsed ranks"):
        analyze(folder, jobs=1)
