"""The Ray engine on a real local Ray cluster: the merged Analysis equals the local one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzers.engine.driver import analyze_trace
from analyzers.engine.ray_executor import INSTALL_HINT, Listing, analyze_ray, place
from analyzers.read.discover import Discovered, TraceFile
from analyzers.read.loader import load
from tests.conftest import REPO
from tests.test_parallel import _ranks
from tracekit.core.analysis import to_json
from tracekit.core.errors import TracekitError

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
pytestmark = pytest.mark.ray
SAMPLES = REPO / "sample_traces"
TRACEKIT = str(Path(sys.executable).parent / "tracekit")


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A real local Ray cluster for this module; yields its address."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def local(path: Path) -> bytes:
    return to_json(analyze_trace(load(path, jobs=1)))


@pytest.mark.parametrize("run", ["vllm_cpu_tp2", "vllm_cpu_pp2", "vllm_cpu_moe_tp2"])
def test_ray_equals_local_on_real_runs(cluster: str, run: str) -> None:
    assert to_json(analyze_ray(SAMPLES / run)) == local(SAMPLES / run)


def test_ray_equals_local_on_one_trace_file(cluster: str) -> None:
    """A run of one file takes both rounds in one task, whose result is a tuple."""
    (trace,) = sorted((SAMPLES / "vllm_cpu_tp2" / "traces").glob("*rank0*.json.gz"))
    assert to_json(analyze_ray(trace)) == local(trace)


def test_ray_equals_local_with_an_unreadable_rank(cluster: str, tmp_path: Path) -> None:
    folder = _ranks(tmp_path / "run", 4)
    (folder / "rank-7.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    seen: list[tuple[int, int, str]] = []
    analysis = analyze_ray(folder, progress=lambda d, t, n: seen.append((d, t, n)))
    assert to_json(analysis) == local(folder)
    assert any("rank-7.json.gz" in w for w in analysis.warnings)
    # one bar over both rounds: 5 files read, then the 4 readable ones analysed
    assert sorted(d for d, _, _ in seen) == list(range(1, 10))
    assert seen[-1][:2] == (9, 9)


def test_ray_error_for_a_path_no_node_holds(cluster: str, tmp_path: Path) -> None:
    with pytest.raises(TracekitError, match="not readable on any of the 1 Ray node"):
        analyze_ray(tmp_path / "nowhere")


def test_cli_joins_a_running_cluster(cluster: str) -> None:
    """A second driver (the CLI) joins the cluster by address and prints the same JSON."""
    env = {**os.environ, "RAY_ADDRESS": ""}
    done = subprocess.run(
        [TRACEKIT, "analyze", "--json", "--ray", cluster, str(SAMPLES / "vllm_cpu_tp2")],
        capture_output=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout == local(SAMPLES / "vllm_cpu_tp2") + b"\n"  # the CLI ends the line


def _listing(node: str, files: dict[str, tuple[int, int]]) -> Listing:
    found = Discovered(Path("/t"), tuple(TraceFile(Path(p), {}, {}) for p in files), None, ())
    return Listing(node, found, None, files)


def test_placement_pins_node_local_files_and_frees_shared_ones() -> None:
    """Two nodes: rank-0 on both (same size and mtime: a shared file system), rank-1 only on
    node B, rank-2 on both but different (two node-local files of one name)."""
    a = {"/t/rank-0.json": (10, 1), "/t/rank-2.json": (5, 1)}
    b = {"/t/rank-0.json": (10, 1), "/t/rank-1.json": (7, 1), "/t/rank-2.json": (6, 2)}
    placed = place("/t", [_listing("A", a), _listing("B", b)])
    got = [(str(f.path), n) for f, n in zip(placed.found.files, placed.nodes, strict=True)]
    assert got == [
        ("/t/rank-0.json", None),
        ("/t/rank-1.json", "B"),
        ("/t/rank-2.json", "A"),
        ("/t/rank-2.json", "B"),
    ]
    assert [f.name_fields for f in placed.found.files][:2] == [{"rank": 0}, {"rank": 1}]


def test_missing_ray_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(TracekitError, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        analyze_ray(SAMPLES / "vllm_cpu_tp2")


def test_an_unreachable_cluster_is_a_one_line_error_at_once() -> None:
    """Ray retries an address that refuses for minutes; tracekit checks it first."""
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        done = subprocess.run(
            [TRACEKIT, "analyze", "--ray", f"127.0.0.1:{port}", str(SAMPLES / "vllm_cpu_tp2")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"tracekit: error: 127.0.0.1:{port}: cannot reach the Ray cluster:")
    )


def test_cli_ray_without_address_takes_the_path(tmp_path: Path) -> None:
    """`tracekit analyze --ray RUN`: the value is a path, so it is the PATH, and a local Ray
    instance runs for the analysis."""
    done = subprocess.run(
        [TRACEKIT, "analyze", "--json", "--ray", str(SAMPLES / "vllm_cpu_pp2")],
        capture_output=True,
        env={**os.environ, "RAY_ADDRESS": ""},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout == local(SAMPLES / "vllm_cpu_pp2") + b"\n"


def test_cli_usage_errors_are_click_usage_errors() -> None:
    from click.testing import CliRunner

    from tracekit.cli import main

    runner = CliRunner()
    missing = runner.invoke(main, ["analyze", "--ray", "no/such/place"])
    assert missing.exit_code == 2 and "Missing argument 'PATH'" in missing.output
    both = runner.invoke(main, ["analyze", "--ray", "-j", "2", str(SAMPLES / "vllm_cpu_tp2")])
    assert both.exit_code == 2 and "--ray and --jobs do not combine" in both.output
