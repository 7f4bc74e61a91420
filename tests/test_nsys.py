"""Nsight Systems SQLite exports: the real shared export, and tiny exports built in code."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import stat
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import tracekit
from analyzers.engine.driver import analyze_trace
from analyzers.read.nsys import parse_nsys
from tests.builders import kernel, write_trace
from tests.conftest import shared
from tracekit.cli import main
from tracekit.core.analysis import to_json
from tracekit.core.errors import TracekitError

REAL = "nsys_a100_saxpy_mpi/report.sqlite"
KERNEL, MEMCPY, MEMSET = (f"CUPTI_ACTIVITY_KIND_{k}" for k in ("KERNEL", "MEMCPY", "MEMSET"))
RUNTIME, NVTX = "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS"
SCHEMA = {
    "StringIds": "id INTEGER PRIMARY KEY, value TEXT NOT NULL",
    KERNEL: "start, end, deviceId, streamId, correlationId, globalPid, demangledName, "
    "shortName, graphNodeId",
    MEMCPY: "start, end, deviceId, streamId, correlationId, globalPid, bytes, copyKind, "
    "srcKind, dstKind",
    MEMSET: "start, end, deviceId, streamId, correlationId, globalPid, value, bytes, memKind",
    RUNTIME: "start, end, eventClass, globalTid, correlationId, nameId",
    NVTX: "start, end, eventType, text, globalTid, endGlobalTid, textId, domainId",
    "TARGET_INFO_GPU": "id, name, totalMemory, memoryBandwidth, smCount, cuDevice",
    "TARGET_INFO_CUDA_DEVICE": "gpuId, cudaId, pid",
    "TARGET_INFO_SESSION_START_TIME": "utcEpochNs, utcTime, localTime",
    "PROCESSES": "globalPid, pid, name",
}
BASE = 1_700_000_000_000_000_000
PID = 4242
H100 = (0, "NVIDIA H100 80GB HBM3", 85_000_000_000, 3_350_000_000_000, 132, 0)


def gid(pid: int, tid: int = 0) -> int:
    """nsys's globalTid / globalPid: host id above bit 48, then pid, then tid."""
    return (1 << 48) | (pid << 24) | tid


class Export:
    """A tiny nsys export: rows per table, strings interned into StringIds."""

    def __init__(self) -> None:
        self.strings: dict[str, int] = {}
        self.rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in SCHEMA}
        self.rows["TARGET_INFO_SESSION_START_TIME"].append((BASE, "", ""))

    def sid(self, text: str) -> int:
        return self.strings.setdefault(text, len(self.strings) + 1)

    def kernel(self, name: str, start: int, end: int, pid: int = PID, **kw: Any) -> None:
        dev, stream, corr, node = (kw.get(k) for k in ("device", "stream", "corr", "node"))
        row = (start, end, dev or 0, stream or 7, corr, gid(pid), self.sid(name), self.sid(name))
        self.rows[KERNEL].append((*row, node))

    def memcpy(self, start: int, end: int, pid: int = PID, device: int = 0) -> None:
        self.rows[MEMCPY].append((start, end, device, 7, None, gid(pid), 64, 1, 0, 2))

    def runtime(self, name: str, start: int, end: int, corr: int, pid: int = PID) -> None:
        self.rows[RUNTIME].append((start, end, 0, gid(pid, pid), corr, self.sid(name)))

    def nvtx(self, text: str, start: int, end: int | None, kind: int = 59, domain: int = 0) -> None:
        self.rows[NVTX].append(
            (start, end, kind, None, gid(PID, PID), None, self.sid(text), domain)
        )

    def write(self, path: Path, without: tuple[str, ...] = ()) -> Path:
        self.rows["StringIds"] = [(i, s) for s, i in self.strings.items()]
        with closing(sqlite3.connect(path)) as db:
            for table, columns in SCHEMA.items():
                if table in without:
                    continue
                db.execute(f"CREATE TABLE {table} ({columns})")
                if rows := self.rows[table]:
                    marks = ", ".join("?" * len(rows[0]))
                    db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            db.commit()
        return path


def simple() -> Export:
    ex = Export()
    ex.rows["TARGET_INFO_GPU"].append(H100)
    ex.runtime("cudaLaunchKernel_v7000", 900, 950, corr=1)
    ex.kernel("ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_tn", 1000, 2000, corr=1)
    ex.kernel(
        "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 2000, 3000
    )
    ex.runtime("cudaStreamSynchronize_v3020", 3000, 3400, corr=2)  # a wait: not host work
    ex.memcpy(3500, 4000)
    return ex


def cli(path: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["analyze", str(path), "--json"])
    return result.exit_code, result.stdout, result.stderr


# --- the real export --------------------------------------------------------------------------


def _sql(path: Path, query: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)) as db:
        return db.execute(query).fetchall()


def _union_ns(intervals: list[tuple[int, int]]) -> int:
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            total += (cur_e - cur_s) if cur_e is not None and cur_s is not None else 0
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + ((cur_e - cur_s) if cur_e is not None and cur_s is not None else 0)


@pytest.mark.shared_traces
def test_real_export_counts_buckets_and_device() -> None:
    path = shared(REAL)
    count = {t: _sql(path, f"SELECT count(*) FROM {t}")[0][0] for t in (KERNEL, MEMCPY)}
    (ranges,) = _sql(
        path, f"SELECT count(*) FROM {NVTX} WHERE eventType IN (59, 60) AND end NOT NULL"
    )
    (calls,) = _sql(path, f"SELECT count(*) FROM {RUNTIME} WHERE eventClass != 67")
    pairs = _sql(
        path,
        f"SELECT DISTINCT globalPid >> 24, deviceId FROM {KERNEL} UNION "
        f"SELECT DISTINCT globalPid >> 24, deviceId FROM {MEMCPY}",
    )
    assert (count[KERNEL], count[MEMCPY], ranges[0], calls[0], len(pairs)) == (5, 15, 22, 57, 1)
    analysis = tracekit.analyze(path)
    (rank,) = analysis.ranks
    assert rank.event_counts == {"kernel": 5, "memcpy": 15, "annotation": 22, "runtime": 57}
    assert sum(rank.buckets.values()) == rank.window_ns
    assert rank.device_names == ["NVIDIA A100-SXM4-40GB"]
    (gpu,) = tracekit.load(path).ranks[0].metadata["deviceProperties"]
    assert (gpu["numSms"], gpu["memoryBandwidth"], gpu["totalGlobalMem"]) == (
        108,
        1_555_200_000_000,
        42_297_524_224,
    )
    assert "pid 1230493 ./saxpy-mpi-cuda, CUDA device 0" in rank.identity.source
    ((session,),) = _sql(path, "SELECT utcEpochNs FROM TARGET_INFO_SESSION_START_TIME")
    device = _sql(
        path, f"SELECT start, end FROM {KERNEL} UNION ALL SELECT start, end FROM {MEMCPY}"
    )
    span = max(e for _, e in device) - min(s for s, _ in device)
    assert rank.window_start_ns == session + min(s for s, _ in device)
    assert rank.window_ns == span
    expected_idle = (span - _union_ns(device)) / span
    measured_idle = (rank.buckets["host"] + rank.buckets["idle"]) / rank.window_ns
    assert abs(measured_idle - expected_idle) < 0.01
    (parsed,) = parse_nsys(path)
    assert parsed.metadata["nvtx_domains"] == {"default": 5, "MPI": 17}
    code, out, err = cli(path)
    assert (code, err) == (0, "")
    assert json.loads(out)["ranks"][0]["window_ns"] == span


# --- tiny exports -----------------------------------------------------------------------------


def test_exact_buckets_nccl_collective_and_absolute_clock(tmp_path: Path) -> None:
    path = simple().write(tmp_path / "report.sqlite")
    (rank,) = tracekit.analyze(path).ranks
    assert rank.window_start_ns == BASE + 1000
    assert rank.window_ns == 3000
    assert {k: v for k, v in rank.buckets.items() if v} == {
        "compute": 1000,
        "collective": 1000,
        "hbm": 500,
        "idle": 500,
    }
    assert rank.clock == "nsys session start (TARGET_INFO_SESSION_START_TIME.utcEpochNs)"
    assert rank.device_names == ["NVIDIA H100 80GB HBM3"]
    assert {o.name for o in rank.top_ops} >= {"Memcpy HtoD (Pageable -> Device)"}
    (parsed,) = parse_nsys(path)
    names = {parsed.names[i] for i in parsed.events.name_id.tolist()}
    assert {"cudaLaunchKernel", "cudaStreamSynchronize"} <= names  # _vNNNN dropped


def test_several_gpus_one_rank_each(tmp_path: Path) -> None:
    ex = Export()
    for gpu in range(3):
        ex.rows["TARGET_INFO_GPU"].append((gpu, f"NVIDIA A100 #{gpu}", 1, 2, 108, gpu))
    # Two processes that each see their GPU as device 0 (CUDA_VISIBLE_DEVICES), and one
    # process driving two devices.
    ex.rows["TARGET_INFO_CUDA_DEVICE"] += [(2, 0, 10), (1, 0, 11), (0, 0, 12), (1, 1, 12)]
    ex.rows["PROCESSES"] += [(gid(p), p, f"worker{p}") for p in (10, 11, 12)]
    for n, (pid, device) in enumerate([(10, 0), (11, 0), (12, 0), (12, 1)]):
        ex.kernel("gemm", 100 * n, 100 * n + 50, pid=pid, device=device, corr=n + 1)
        ex.runtime("cudaLaunchKernel_v7000", 100 * n - 10, 100 * n - 5, corr=n + 1, pid=pid)
    trace = tracekit.load(ex.write(tmp_path / "node.sqlite"))
    got = [(r.id.rank, r.devices, r.device_names, r.metadata["nsys"]["pid"]) for r in trace.ranks]
    assert got == [
        (0, (0,), ("NVIDIA A100 #2",), 10),
        (1, (0,), ("NVIDIA A100 #1",), 11),
        (2, (0,), ("NVIDIA A100 #0",), 12),
        (3, (1,), ("NVIDIA A100 #1",), 12),
    ]
    assert "worker12, CUDA device 1 (NVIDIA A100 #1)" in trace.ranks[3].id.source
    # Host events of a process go with each of its ranks.
    assert [int((r.events.kind == 4).sum()) for r in trace.ranks] == [1, 1, 2, 2]
    sequential = analyze_trace(trace)
    for rank in sequential.ranks:
        assert sum(rank.buckets.values()) == rank.window_ns == 50
    # one export holding four ranks, analysed in a worker: the same Analysis
    assert to_json(tracekit.analyze(tmp_path / "node.sqlite", jobs=2)) == to_json(sequential)


def test_cuda_graph_node_kernels_share_the_launch_correlation(tmp_path: Path) -> None:
    ex = Export()
    ex.runtime("cudaGraphLaunch_v10000", 0, 10, corr=7)
    for node in range(3):
        ex.kernel(f"graph_kernel_{node}", 100 + 10 * node, 105 + 10 * node, corr=7, node=node)
    ex.kernel("eager_kernel", 200, 210, corr=8)
    (rank,) = tracekit.analyze(ex.write(tmp_path / "g.sqlite")).ranks
    assert rank.graph_kernels == 3
    assert rank.event_counts == {"kernel": 4, "runtime": 1}
    # Graph-level tracing (nsys's default): one row per launch, counted as one kernel each.
    path = ex.write(tmp_path / "graph_level.sqlite", without=(KERNEL,))
    with closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE CUPTI_ACTIVITY_KIND_GRAPH_TRACE (start, end, deviceId, streamId, "
            "correlationId, globalPid, graphId, graphExecId)"
        )
        db.execute(
            "INSERT INTO CUPTI_ACTIVITY_KIND_GRAPH_TRACE VALUES (100, 125, 0, 7, 7, ?, 1, 1)",
            (gid(PID),),
        )
        db.commit()
    (rank,) = tracekit.analyze(path).ranks
    assert (rank.window_ns, rank.graph_kernels, rank.buckets["compute"]) == (25, 1, 25)
    assert list(rank.ignored.values()) == [1]
    assert "--cuda-graph-trace=node" in next(iter(rank.ignored))


def test_nvtx_ranges_give_steps_and_missing_tables_are_tolerated(tmp_path: Path) -> None:
    ex = simple()
    ex.nvtx("execute_context_1(128)_generation_0(0)", 950, 2100, domain=1)
    ex.nvtx("execute_context_0(0)_generation_4(4)", 2100, 4000, kind=60, domain=1)
    ex.nvtx("vllm", 0, None)  # a push never popped
    ex.rows[NVTX].append((0, None, 75, "tracekit", None, None, None, 1))  # domain create
    analysis = tracekit.analyze(ex.write(tmp_path / "steps.sqlite"))
    (rank,) = analysis.ranks
    assert [(s.kind, s.context_tokens, s.generation_tokens) for s in rank.steps] == [
        ("prefill", 128, 0),
        ("decode", 0, 4),
    ]
    assert rank.ignored == {"NVTX ranges never closed in the capture": 1}
    assert any("1 NVTX ranges never closed" in w for w in analysis.warnings)
    (parsed,) = parse_nsys(tmp_path / "steps.sqlite")
    assert parsed.metadata["nvtx_domains"] == {"tracekit": 2}
    # No NVTX, runtime, GPU or session tables at all: still a GPU rank, on the session clock.
    bare = ("TARGET_INFO_GPU", "TARGET_INFO_SESSION_START_TIME", NVTX, RUNTIME, MEMSET)
    (rank,) = tracekit.analyze(simple().write(tmp_path / "bare.sqlite", without=bare)).ranks
    assert rank.clock == "nsys session clock (no TARGET_INFO_SESSION_START_TIME)"
    assert (rank.window_start_ns, rank.device_names, rank.steps) == (1000, [], [])
    assert rank.event_counts == {"kernel": 2, "memcpy": 1}


def test_backtrace_copies_of_runtime_calls_are_dropped(tmp_path: Path) -> None:
    ex = simple()
    ex.rows[RUNTIME].append((899, 951, 67, gid(PID, PID), 1, ex.sid("cudaLaunchKernel")))
    (parsed,) = parse_nsys(ex.write(tmp_path / "bt.sqlite"))
    assert int((parsed.events.kind == 4).sum()) == 2


# --- bad input --------------------------------------------------------------------------------


def _bad_cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "text.sqlite").write_text("hello, not a database\n")
    with closing(sqlite3.connect(tmp / "other.sqlite")) as db:
        db.execute("CREATE TABLE t (x)")
        db.commit()
    ex = simple()
    for n in range(3000):  # several pages, so that half of the file is missing some
        ex.runtime(f"cudaCall{n}", n, n + 1, corr=100 + n)
    data = ex.write(tmp / "full.sqlite").read_bytes()
    (tmp / "cut.sqlite").write_bytes(data[: len(data) // 2])
    no_gpu = simple()
    no_gpu.rows[KERNEL].clear()
    no_gpu.rows[MEMCPY].clear()
    return {
        "not sqlite": (tmp / "text.sqlite", "not an SQLite database"),
        "no nsys tables": (tmp / "other.sqlite", "not an Nsight Systems export"),
        "truncated": (tmp / "cut.sqlite", "truncated SQLite file"),
        "no gpu activity": (no_gpu.write(tmp / "cpu.sqlite"), "no GPU activity"),
        "report without nsys": (tmp / "r.nsys-rep", "nsys not on PATH"),
    }


@pytest.mark.parametrize(
    "case", ["not sqlite", "no nsys tables", "truncated", "no gpu activity", "report without nsys"]
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    (tmp_path / "r.nsys-rep").write_bytes(b"\0" * 64)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    path, cause = _bad_cases(tmp_path)[case]
    code, out, err = cli(path)
    assert (code, out) == (2, "")
    (line,) = err.strip().splitlines()
    assert line.startswith(f"tracekit: error: {path}: ")
    assert cause in line


def test_nsys_report_is_exported_with_nsys_from_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = simple().write(tmp_path / "prebuilt.sqlite")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nsys"  # stands in for `nsys export --type=sqlite --output OUT REPORT`
    fake.write_text(
        f'#!/bin/sh\n[ "$1 $2 $3" = "export --type=sqlite --output" ] && cp {export} "$4"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.nsys-rep").write_bytes(b"\0" * 64)
    (rank,) = tracekit.analyze(run / "report.nsys-rep").ranks
    assert rank.window_ns == 3000
    assert rank.path == str(run / "report.nsys-rep")
    # A folder holding a report and its export reads the export once.
    (run / "report.sqlite").write_bytes(export.read_bytes())
    analysis = tracekit.analyze(run)
    assert [r.path for r in analysis.ranks] == [str(run / "report.sqlite")]
    assert "skipped report.nsys-rep: its SQLite export is here" in analysis.warnings


def test_damaged_exports_raise_one_domain_error(tmp_path: Path) -> None:
    ex = simple()
    ex.nvtx("execute_context_1(128)_generation_0(0)", 950, 2100, domain=1)
    ex.rows["TARGET_INFO_CUDA_DEVICE"].append((0, 0, PID))
    for n in range(300):
        ex.runtime(f"cudaCall{n}", n, n + 1, corr=100 + n)
    good = ex.write(tmp_path / "good.sqlite").read_bytes()
    rng = random.Random(7)
    for case in range(60):  # bytes flipped, or a block zeroed: never a traceback
        data = bytearray(good)
        if case % 2:
            for _ in range(rng.randint(1, 30)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            at, size = rng.randrange(100, len(data)), rng.randint(1, 600)
            data[at : at + size] = bytes(len(data[at : at + size]))
        path = tmp_path / f"damaged{case}.sqlite"
        path.write_bytes(bytes(data))
        try:
            parse_nsys(path)
        except TracekitError as exc:
            assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)


def test_folder_with_kineto_traces_and_an_export_reads_the_kineto_traces(tmp_path: Path) -> None:
    write_trace(tmp_path / "rank-0.json.gz", [kernel("gemm", 0, 10)], rank=0)
    simple().write(tmp_path / "report.sqlite")
    analysis = tracekit.analyze(tmp_path)
    assert [r.path for r in analysis.ranks] == [str(tmp_path / "rank-0.json.gz")]
    assert any(
        w.startswith("skipped report.sqlite: an Nsight Systems file") for w in analysis.warnings
    )


def test_one_export_per_process_takes_the_rank_from_the_file_name(tmp_path: Path) -> None:
    for rank in (1, 0):
        ex = simple()
        ex.rows[KERNEL].append((5000, 5100, 0, 7, None, gid(PID), ex.sid("gemm"), 1, None))
        ex.rows[KERNEL].append((6000, 5999, 0, 7, None, gid(PID), ex.sid("gemm"), 1, None))
        ex.write(tmp_path / f"report_rank{rank}.sqlite")
    trace = tracekit.load(tmp_path)
    assert [(r.id.rank, Path(r.path).name) for r in trace.ranks] == [
        (0, "report_rank0.sqlite"),
        (1, "report_rank1.sqlite"),
    ]
    assert trace.ranks[0].id.source.startswith("file name+nsys export: pid 4242")
    assert trace.ranks[0].ignored == {"kernels with corrupt times": 1}
