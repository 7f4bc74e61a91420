"""Benchmark reading Nsight Systems SQLite exports: the shared real one and a large synthetic one.

Usage (from the repo root):

    .venv/bin/python benchmarks/bench_nsys.py                     # shared export + 1M kernels
    .venv/bin/python benchmarks/bench_nsys.py --kernels 200000 --repeat 5 --json
    .venv/bin/python benchmarks/bench_nsys.py --export path/to/report.sqlite --no-synthetic

For each export: `read` is `analyzers.read.nsys.parse_nsys` (SQL → numpy columns, split into ranks),
`analyze` is the whole `tracekit.analyze` (read + classify + attribute + steps); the best of
`--repeat` runs in this process, and events per second = events read / best time. The synthetic
export is generated inside SQLite (a recursive CTE, no Python row loop) in a temporary folder:
one process on one GPU, `--kernels` kernels cycling over realistic vLLM kernel names, one
`cudaLaunchKernel` per kernel (correlated), one NVTX `execute_context_…` step range per 100
kernels and one memcpy per 1000 kernels. Exit 0; exit 2 if `--export` is missing.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tracekit  # noqa: E402
from analyzers.read.nsys import parse_nsys  # noqa: E402

DEFAULT_EXPORT = REPO.parent / "shared/traces/nsys_a100_saxpy_mpi/report.sqlite"
KERNEL_NAMES = (
    "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1",
    "void flash::flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4>>(Params)",
    "void vllm::rms_norm_kernel<c10::BFloat16>(c10::BFloat16*, c10::BFloat16 const*, float)",
    "void vllm::act_and_mul_kernel<c10::BFloat16, &vllm::silu_kernel<c10::BFloat16>, true>",
    "void vllm::reshape_and_cache_flash_kernel<__nv_bfloat16, __nv_bfloat16, 0>(...)",
    "void vllm::rotary_embedding_kernel<c10::BFloat16, true>(long const*, ...)",
    "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)",
    "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>(...)",
)
SCHEMA = """
CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER NOT NULL, end INTEGER NOT NULL,
  deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, streamId INTEGER NOT NULL,
  correlationId INTEGER, globalPid INTEGER, demangledName INTEGER NOT NULL,
  shortName INTEGER NOT NULL, mangledName INTEGER, gridId INTEGER, graphNodeId INTEGER);
CREATE TABLE CUPTI_ACTIVITY_KIND_MEMCPY (start INTEGER NOT NULL, end INTEGER NOT NULL,
  deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, streamId INTEGER NOT NULL,
  correlationId INTEGER, globalPid INTEGER, bytes INTEGER NOT NULL, copyKind INTEGER NOT NULL,
  srcKind INTEGER, dstKind INTEGER);
CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start INTEGER NOT NULL, end INTEGER NOT NULL,
  eventClass INTEGER NOT NULL, globalTid INTEGER, correlationId INTEGER,
  nameId INTEGER NOT NULL, returnValue INTEGER NOT NULL, callchainId INTEGER);
CREATE TABLE NVTX_EVENTS (start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL,
  rangeId INTEGER, category INTEGER, color INTEGER, text TEXT, globalTid INTEGER,
  endGlobalTid INTEGER, textId INTEGER, domainId INTEGER);
CREATE TABLE TARGET_INFO_GPU (id INTEGER NOT NULL, name TEXT NOT NULL, totalMemory INTEGER,
  memoryBandwidth INTEGER, smCount INTEGER, cuDevice INTEGER);
CREATE TABLE TARGET_INFO_SESSION_START_TIME (utcEpochNs INTEGER, utcTime TEXT, localTime TEXT);
"""
PID = 4242
GLOBAL_PID = (1 << 48) | (PID << 24)
GLOBAL_TID = GLOBAL_PID | PID
STEP = "execute_context_0(0)_generation_64(64)"


def build_synthetic(path: Path, kernels: int) -> dict[str, int]:
    """A one-GPU, one-process export with ``kernels`` kernels, generated inside SQLite."""
    n_names = len(KERNEL_NAMES)
    seq = "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq "
    seq += f"WHERE i < {kernels - 1})"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(SCHEMA)
        strings = [*KERNEL_NAMES, "cudaLaunchKernel_v7000", "cudaMemcpyAsync_v3020", STEP]
        db.executemany("INSERT INTO StringIds VALUES (?, ?)", list(enumerate(strings, 1)))
        launch, copy, step = n_names + 1, n_names + 2, n_names + 3
        db.execute(
            "INSERT INTO TARGET_INFO_GPU VALUES (0, 'NVIDIA H100 80GB HBM3', 85899345920, "
            "3352320000000, 132, 0)"
        )
        db.execute(
            "INSERT INTO TARGET_INFO_SESSION_START_TIME VALUES (1700000000000000000, '', '')"
        )
        # Kernel i runs at [2000 i + 1000, 2000 i + 2500); its launch at [2000 i, 2000 i + 300).
        db.execute(
            f"{seq} INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL SELECT 2000 * i + 1000, "
            f"2000 * i + 2500, 0, 1, 7, i + 1, {GLOBAL_PID}, i % {n_names} + 1, "
            f"i % {n_names} + 1, NULL, i, NULL FROM seq"
        )
        db.execute(
            f"{seq} INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME SELECT 2000 * i, 2000 * i + 300, 0, "
            f"{GLOBAL_TID}, i + 1, {launch}, 0, NULL FROM seq"
        )
        db.execute(
            f"{seq} INSERT INTO NVTX_EVENTS SELECT 2000 * i, 2000 * (i + 100) - 100, 59, NULL, "
            f"NULL, NULL, NULL, {GLOBAL_TID}, NULL, {step}, 0 FROM seq WHERE i % 100 = 0"
        )
        db.execute(
            f"{seq} INSERT INTO CUPTI_ACTIVITY_KIND_MEMCPY SELECT 2000 * i + 2500, "
            f"2000 * i + 2900, 0, 1, 8, {kernels} + i + 1, {GLOBAL_PID}, 1048576, 1, 0, 2 "
            "FROM seq WHERE i % 1000 = 999"
        )
        db.execute(
            f"{seq} INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME SELECT 2000 * i + 2400, "
            f"2000 * i + 2950, 0, {GLOBAL_TID}, {kernels} + i + 1, {copy}, 0, NULL "
            "FROM seq WHERE i % 1000 = 999"
        )
        db.commit()
        tables = ("KERNEL", "MEMCPY", "RUNTIME")
        counts = {
            t.lower(): db.execute(f"SELECT count(*) FROM CUPTI_ACTIVITY_KIND_{t}").fetchone()[0]
            for t in tables
        }
        counts["nvtx"] = db.execute("SELECT count(*) FROM NVTX_EVENTS").fetchone()[0]
    return counts


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(label: str, path: Path, repeat: int) -> dict[str, Any]:
    read_s, ranks = best_of(repeat, lambda: parse_nsys(path))
    events = sum(len(r.events) for r in ranks)
    analyze_s, analysis = best_of(repeat, lambda: tracekit.analyze(path))
    steps = sum(len(r.steps) for r in analysis.ranks)
    return {
        "export": label,
        "path": str(path),
        "size_mb": round(path.stat().st_size / 2**20, 1),
        "ranks": len(ranks),
        "events": events,
        "steps": steps,
        "read_s": round(read_s, 4),
        "read_events_per_s": round(events / read_s),
        "analyze_s": round(analyze_s, 4),
        "analyze_events_per_s": round(events / analyze_s),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, default=DEFAULT_EXPORT, help="a real export")
    parser.add_argument("--kernels", type=int, default=1_000_000, help="synthetic kernels")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure (best kept)")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic export")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows = []
    if args.export.exists():
        rows.append(measure(args.export.parent.name, args.export, args.repeat))
    elif args.export != DEFAULT_EXPORT:
        print(f"bench_nsys: {args.export}: no such file", file=sys.stderr)
        return 2
    else:
        print(f"bench_nsys: {DEFAULT_EXPORT} absent: skipping the real export", file=sys.stderr)
    if not args.no_synthetic:
        with tempfile.TemporaryDirectory(prefix="tracekit-bench-nsys-") as tmp:
            path = Path(tmp) / "synthetic.sqlite"
            start = time.perf_counter()
            counts = build_synthetic(path, max(args.kernels, 1))
            built = time.perf_counter() - start
            print(f"built {path.name}: {counts} in {built:.1f} s", file=sys.stderr)
            rows.append(measure(f"synthetic {args.kernels:,} kernels", path, args.repeat))
    machine = f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    if args.json:
        print(json.dumps({"machine": machine, "results": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"nsys export read ({machine}; best of {args.repeat})")
    for col in ("export", "MB", "ranks", "events", "steps", "read s", "read ev/s", "analyze s"):
        table.add_column(col, justify="left" if col == "export" else "right")
    table.add_column("analyze ev/s", justify="right")
    for r in rows:
        table.add_row(
            r["export"],
            f"{r['size_mb']:,}",
            str(r["ranks"]),
            f"{r['events']:,}",
            f"{r['steps']:,}",
            f"{r['read_s']:.3f}",
            f"{r['read_events_per_s']:,}",
            f"{r['analyze_s']:.3f}",
            f"{r['analyze_events_per_s']:,}",
        )
    Console(width=max(Console().width, 140)).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
