"""Random mutations of real traces, of every kind a trace in the wild or on a bad disk may
show: for the fuzz test (a seed drawn by hypothesis) and benchmarks/fuzz_traces.py.

Kineto (``mutate_kineto``): the JSON or its gzip truncated at a random byte; random bytes
overwritten or spliced in; events deleted, duplicated or shuffled; a field's type changed
(int ↔ str ↔ float ↔ null ↔ list ↔ object ↔ bool); required keys dropped; huge, negative,
NaN/Infinity numbers; wrong nesting; top-level keys of another type; and meaningful swaps
(categories, names the stages look for, phases, ids linking other events, collective args,
shapes, overlapping times). Nsight Systems exports (``mutate_nsys``): the file truncated or
overwritten; cells of another type; huge or negative times; rows deleted or duplicated; a
column or a table dropped.
"""

from __future__ import annotations

import gzip
import json
import random
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.real_traces import sqlite_cells

HUGE: list[Any] = [2**63, 2**64 + 7, -(2**63) - 1, 10**30, -1, -(10**12), 0, 1e308, -1e308, 1e-300]
WEIRD = ["NaN", "Infinity", "-Infinity"]  # what Python's json writes; not JSON
FIELDS = ["ph", "cat", "name", "ts", "dur", "pid", "tid", "args", "id"]
ARGS = ["correlation", "stream", "device", "External id", "Input Dims", "Input type"]
ARGS += ["In msg nelems", "Out msg nelems", "dtype", "Group size"]
TOP = ["baseTimeNanoseconds", "distributedInfo", "deviceProperties", "schemaVersion"]
TIME_COLUMNS = ["start", "end", "timestamp", "deviceId", "streamId", "globalPid", "globalTid"]

CATEGORIES = ["cpu_op", "user_annotation", "python_function", "cuda_runtime", "cuda_driver"]
CATEGORIES += ["kernel", "gpu_memcpy", "gpu_memset", "gpu_user_annotation", "ac2g", "Trace"]
NAMES = [
    "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)",
    "ncclKernel_AllGather_RING_LL_Sum_int8_t(ncclWorkElem)",
    "ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)",
    "record_param_comms",
    "nccl:all_reduce",
    "c10d::allreduce_",
    "gloo:all_reduce",
    "_C::shm_allreduce",
    "execute_context_3(120)_generation_5(5)",
    "execute_context_0(0)_generation_1(1)",
    "vllm::unified_attention_with_output",
    "fused_moe_kernel",
    "void vllm::moe::topkGatingSoftmax<4, 128, 4, 16>(float const*, bool const*, int*)",
    "aten::mm",
    "cudaLaunchKernel",
    "cudaGraphLaunch",
    "hipGraphLaunch",
    "cudaStreamSynchronize",
    "ProfilerStep#3",
    "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64",
]
DTYPES = ["float", "c10::BFloat16", "Float", "BFloat16", "int", "Weird", "", "ScalarList"]

Doc = dict[str, Any]


# -- Kineto mutations: each returns the bytes to write and whether to gzip them ---------------


def _retyped(rng: random.Random, value: Any) -> Any:
    """``value`` as another JSON type: int ↔ str ↔ float ↔ null ↔ list ↔ object ↔ bool."""
    return rng.choice(
        [
            str(value),
            None,
            [value],
            {"v": value},
            True,
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 1.5,
            int(value) if isinstance(value, float) and abs(value) < 1e18 else 7,
            hex(value) if isinstance(value, int) and not isinstance(value, bool) else "0x0",
            "",
            "abc",
        ]
    )


def _event(rng: random.Random, doc: Doc) -> dict[str, Any] | None:
    events = [e for e in doc["traceEvents"] if isinstance(e, dict)]
    return rng.choice(events) if events else None


def _retype_fields(rng: random.Random, doc: Doc) -> None:
    for _ in range(rng.randint(1, 6)):
        if (e := _event(rng, doc)) is None:
            return
        field = rng.choice(FIELDS + ARGS)
        holder = e if field in FIELDS else e.setdefault("args", {})
        if isinstance(holder, dict):
            holder[field] = _retyped(rng, holder.get(field, rng.randint(0, 10**6)))


def _drop_keys(rng: random.Random, doc: Doc) -> None:
    for _ in range(rng.randint(1, 8)):
        if (e := _event(rng, doc)) is not None and e:
            e.pop(rng.choice(list(e)), None)
    if rng.random() < 0.3:
        doc.pop(rng.choice(["traceEvents", *TOP]), None)


def _extreme(rng: random.Random, doc: Doc) -> None:
    for _ in range(rng.randint(1, 4)):
        if (e := _event(rng, doc)) is None:
            return
        field = rng.choice(["ts", "dur", "pid", "tid", "correlation", "Group size", "device"])
        holder = e if field in FIELDS else e.setdefault("args", {})
        if isinstance(holder, dict):
            holder[field] = rng.choice([*HUGE, float("nan"), float("inf"), *WEIRD])


def _nesting(rng: random.Random, doc: Doc) -> None:
    events = doc["traceEvents"]
    i = rng.randrange(len(events)) if events else 0
    choice = rng.randrange(7)
    if choice == 0 and events:
        events[i] = [events[i]]
    elif choice == 1 and events and isinstance(events[i], dict):
        events[i]["args"] = [events[i].get("args")]
    elif choice == 2:
        doc["traceEvents"] = {"events": events}
    elif choice == 3 and events and isinstance(events[i], dict):
        events[i]["args"] = {"args": events[i].get("args")}
    elif choice == 4:
        doc["traceEvents"] = [events]
    elif choice == 5 and events and isinstance(events[i], dict):
        events[i]["args"] = dict(events[i].get("args") or {}, **{"Input Dims": [[[1, [2]]]]})
    else:
        doc["traceEvents"] = events[i] if events else None


def _events(rng: random.Random, doc: Doc) -> None:
    events = doc["traceEvents"]
    kind = rng.randrange(3)
    for _ in range(rng.randint(1, 20)):
        if not events:
            return
        i = rng.randrange(len(events))
        if kind == 0:
            events.pop(i)
        elif kind == 1:
            events.insert(rng.randrange(len(events)), events[i])
    if kind == 2:
        rng.shuffle(events)


def _semantic(rng: random.Random, doc: Doc) -> None:
    """Valid-looking changes the stages read: categories, names they match, phases, ids
    linking other events, collective args, shapes, times that overlap others."""
    for _ in range(rng.randint(1, 8)):
        if (e := _event(rng, doc)) is None or (other := _event(rng, doc)) is None:
            return
        args = e.setdefault("args", {})
        args = args if isinstance(args, dict) else {}
        choice = rng.randrange(9)
        if choice == 0:
            e["cat"] = rng.choice(CATEGORIES)
        elif choice == 1:
            e["name"] = rng.choice(NAMES)
        elif choice == 2:
            e["ph"] = rng.choice(["B", "E", "i", "M", "X", "s", "f"])
        elif choice == 3:
            key = rng.choice(["correlation", "External id", "stream", "device"])
            other_args = other.get("args")
            if isinstance(other_args, dict):
                args[key] = other_args.get(key, rng.randint(-2, 10))
        elif choice == 4:
            args["In msg nelems"] = rng.choice([0, 1, 2**20, 2**40, -5])
            args["Out msg nelems"] = rng.choice([0, 4, 2**21, 2**62])
            args["Group size"] = rng.choice([1, 2, 8, 0, -1, 2**31])
            args["dtype"] = rng.choice(DTYPES)
        elif choice == 5:
            dims = [[rng.choice([0, 1, 7, 4096, -1, 2**40]) for _ in range(rng.randint(0, 3))]]
            args["Input Dims"] = dims * rng.randint(1, 3)
            args["Input type"] = [rng.choice(DTYPES) for _ in range(rng.randint(0, 3))]
        elif choice == 6:
            e["ts"], e["dur"] = other.get("ts", 0), rng.choice([0, other.get("dur", 1), 10**9])
        elif choice == 7:
            e["pid"], e["tid"] = other.get("pid", 0), other.get("tid", 0)
        else:
            e["dur"] = rng.choice([0, 1, -1, 0.0005, 10**7])


def _top_level(rng: random.Random, doc: Doc) -> None:
    key = rng.choice(TOP)
    doc[key] = _retyped(rng, doc.get(key, 1_700_000_000_000_000_000))


DOC_KINDS: dict[str, Callable[[random.Random, Doc], None]] = {
    "retype field": _retype_fields,
    "drop keys": _drop_keys,
    "extreme numbers": _extreme,
    "wrong nesting": _nesting,
    "delete/dup/shuffle events": _events,
    "top-level types": _top_level,
    "semantic swaps": _semantic,
}
#: every kind, the semantic swaps twice as often (they reach the stages, not the parser)
KINETO_KINDS = ["truncate json", "truncate gzip", "flip bytes", "splice bytes", *DOC_KINDS]
KINETO_KINDS += ["semantic swaps"]


def _bytes_mutation(rng: random.Random, kind: str, raw: bytes) -> bytes:
    if kind.startswith("truncate"):
        return raw[: rng.randrange(len(raw) + 1)]
    data = bytearray(raw)
    if kind == "flip bytes":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    at = rng.randrange(len(data))  # splice: structural characters and digits
    junk = "".join(
        rng.choice('{}[]",:0123456789.-eE ntrufalse\\') for _ in range(rng.randint(1, 12))
    )
    return bytes(data[:at]) + junk.encode() + bytes(data[at + rng.randint(0, 12) :])


def mutate_kineto(rng: random.Random, base: bytes) -> tuple[str, bytes]:
    """(kind, the file's bytes: JSON, or gzip where they start with its magic) from the
    JSON text of a trace."""
    kind = rng.choice(KINETO_KINDS)
    if kind in DOC_KINDS:
        doc = json.loads(base)
        DOC_KINDS[kind](rng, doc)
        text = json.dumps(doc).encode()  # the stdlib: ints beyond 64 bits, NaN
        return kind, gzip.compress(text, compresslevel=1) if rng.random() < 0.5 else text
    if kind == "truncate gzip":
        packed = gzip.compress(base, compresslevel=1)
        return kind, packed[: max(2, rng.randrange(len(packed) + 1))]
    return kind, _bytes_mutation(rng, kind, base)


def file_name(data: bytes) -> str:
    return "t.json.gz" if data[:2] == b"\x1f\x8b" else "t.json"


# -- Nsight Systems mutations ------------------------------------------------------------------


def mutate_nsys(rng: random.Random, base: bytes, path: Path) -> str:
    kind = rng.choice(["truncate file", "flip bytes", "cells", "times", "rows", "drop"])
    if kind in ("truncate file", "flip bytes"):
        path.write_bytes(_bytes_mutation(rng, kind, base))
        return kind
    path.write_bytes(base)
    with closing(sqlite3.connect(path)) as db:
        tables = sqlite_cells(db)
        for _ in range(rng.randint(1, 6)):
            table, columns, rows = rng.choice(tables)
            row = rng.randint(1, rows)
            times = [c for c in columns if c in TIME_COLUMNS] or columns
            try:
                if kind == "cells":
                    value = rng.choice([None, "abc", "12", 3.5, b"\x00\x01", -1, 2**63 - 1])
                    sql = f"UPDATE [{table}] SET [{rng.choice(columns)}] = ? WHERE rowid = ?"
                    db.execute(sql, (value, row))
                elif kind == "times":
                    value = rng.choice([2**63 - 1, -(2**63), -1, 0, 10**18, 1e300])
                    sql = f"UPDATE [{table}] SET [{rng.choice(times)}] = ? WHERE rowid = ?"
                    db.execute(sql, (value, row))
                elif kind == "rows" and rng.random() < 0.5:
                    db.execute(f"DELETE FROM [{table}] WHERE rowid = ?", (row,))
                elif kind == "rows":
                    db.execute(
                        f"INSERT INTO [{table}] SELECT * FROM [{table}] WHERE rowid = ?", (row,)
                    )
                elif rng.random() < 0.5:
                    db.execute(f"ALTER TABLE [{table}] DROP COLUMN [{rng.choice(columns)}]")
                else:
                    db.execute(f"DROP TABLE [{table}]")
            except sqlite3.DatabaseError:
                continue  # a change SQLite refuses (a key, a constraint): none made
            tables = sqlite_cells(db)
            if not tables:
                break
        db.commit()
    return kind
