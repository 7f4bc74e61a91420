"""Tiny Kineto traces built in test code, with exactly known timings (µs in, ns out)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

PID = 100
TID = 101


def kernel(
    name: str, ts: float, dur: float, stream: int = 7, corr: int = -1, device: int = 0
) -> dict[str, Any]:
    args: dict[str, Any] = {"stream": stream, "device": device}
    if corr >= 0:
        args["correlation"] = corr
    return {
        "ph": "X",
        "cat": "kernel",
        "name": name,
        "ts": ts,
        "dur": dur,
        "pid": device,
        "tid": stream,
        "args": args,
    }


def memcpy(ts: float, dur: float, stream: int = 7) -> dict[str, Any]:
    return {
        "ph": "X",
        "cat": "gpu_memcpy",
        "name": "Memcpy HtoD (Pageable -> Device)",
        "ts": ts,
        "dur": dur,
        "pid": 0,
        "tid": stream,
        "args": {"stream": stream, "device": 0},
    }


def cpu_op(name: str, ts: float, dur: float, tid: int = TID) -> dict[str, Any]:
    return {
        "ph": "X",
        "cat": "cpu_op",
        "name": name,
        "ts": ts,
        "dur": dur,
        "pid": PID,
        "tid": tid,
        "args": {"External id": 1},
    }


def runtime(name: str, ts: float, dur: float, corr: int) -> dict[str, Any]:
    return {
        "ph": "X",
        "cat": "cuda_runtime",
        "name": name,
        "ts": ts,
        "dur": dur,
        "pid": PID,
        "tid": TID,
        "args": {"correlation": corr},
    }


def annotation(name: str, ts: float, dur: float) -> dict[str, Any]:
    return {
        "ph": "X",
        "cat": "user_annotation",
        "name": name,
        "ts": ts,
        "dur": dur,
        "pid": PID,
        "tid": TID,
    }


def write_trace(
    path: Path,
    events: list[dict[str, Any]],
    *,
    rank: int | None = None,
    world: int = 1,
    base_ns: int | None = None,
    gz: bool = True,
    extra: dict[str, Any] | None = None,
) -> Path:
    doc: dict[str, Any] = {"schemaVersion": 1, "traceEvents": events}
    if rank is not None:
        doc["distributedInfo"] = {"backend": "nccl", "rank": rank, "world_size": world}
    if base_ns is not None:
        doc["baseTimeNanoseconds"] = base_ns
    doc.update(extra or {})
    data = orjson.dumps(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def shaped_op(
    name: str,
    ts: float,
    dur: float,
    dims: list[Any],
    types: list[str],
    tid: int = TID,
    cat: str = "cpu_op",
    **args: Any,
) -> dict[str, Any]:
    """A host op recorded with ``record_shapes=True`` (``Input Dims`` / ``Input type``); more
    Kineto args by keyword, e.g. ``**{"In msg nelems": 4}``."""
    return {
        "ph": "X",
        "cat": cat,
        "name": name,
        "ts": ts,
        "dur": dur,
        "pid": PID,
        "tid": tid,
        "args": {"External id": 1, "Input Dims": dims, "Input type": types, **args},
    }
