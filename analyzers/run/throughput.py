"""A run's decode throughput: generated tokens over busy engine time, per engine, summed.

On ``steps/`` records (the engine basis) a step lasts until its engine's next one and the
last lasts the median gap (``engine_timeline.step_durations``); a gap longer than ``IDLE_GAP``
median gaps is idle time or capture overhead and counts as one median gap
(``busy_durations``). Without step records the profiled step annotations stand in (the
profile basis): generation tokens over summed step time per DP replica.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

import msgspec

from analyzers.run.engine_timeline import busy_durations, step_durations
from tracekit.core import rundir
from tracekit.core.analysis import Analysis
from tracekit.core.regime_table import IDLE_GAP

Basis = Literal["engine", "profile"]
BASIS_TEXT: Final[dict[str, str]] = {
    "engine": "engine steps/: decode tokens over busy engine time per engine, summed over "
    f"engines (a step lasts until the next; a gap over {IDLE_GAP}× the median step counts as "
    "one median step: idle or capture overhead)",
    "profile": "profiled step annotations: generation tokens over summed step time per DP "
    "replica, summed over replicas (excludes time between steps)",
}


class Throughput(msgspec.Struct, frozen=True):
    basis: Basis
    tokens: int  # generated (decode) tokens
    processed_tokens: int  # prefill + decode tokens
    busy_ns: int  # the longest engine's / replica's busy time (the rates are per engine)
    excluded_ns: int  # idle gaps and capture overhead left out (engine basis)
    tokens_per_s: float
    tokens_per_s_per_device: float


def throughput(a: Analysis, devices: int) -> Throughput | None:
    """Per engine (or DP replica): decode tokens over its busy time; the rates add up."""
    run_dir = Path(a.run_dir) if a.run_dir else None
    records = rundir.read_steps(run_dir) if run_dir and run_dir.is_dir() else []
    # per engine / replica: (decode tokens, prefill tokens, duration, busy part)
    streams: dict[int | None, list[tuple[int, int, int, int]]] = {}
    basis: Basis = "engine" if any(r.decode_tokens for r in records) else "profile"
    if basis == "engine":
        durs, busy = step_durations(records), busy_durations(records)
        for i, r in enumerate(records):
            row = (r.decode_tokens, r.prefill_tokens, int(durs[i]), int(busy[i]))
            streams.setdefault(r.engine, []).append(row)
    for rank in a.ranks if basis == "profile" else ():  # TP / PP ranks repeat the steps
        if rank.steps:
            got = [(s.generation_tokens, s.context_tokens, s.dur_ns, s.dur_ns) for s in rank.steps]
            streams.setdefault(rank.identity.dp, got)
    tokens = processed = busy_ns = excluded = 0
    per_s = 0.0
    for engine in sorted(streams, key=lambda e: -1 if e is None else e):
        rows = streams[engine]
        busy_sum = sum(b for *_, b in rows)
        excluded += sum(d for _, _, d, _ in rows) - busy_sum
        gen = sum(t for t, *_ in rows)
        tokens, processed = tokens + gen, processed + gen + sum(p for _, p, *_ in rows)
        busy_ns = max(busy_ns, busy_sum)
        per_s += gen / busy_sum * 1e9 if busy_sum else 0.0
    if not tokens or not per_s:
        return None
    return Throughput(basis, tokens, processed, busy_ns, excluded, per_s, per_s / devices)


__all__ = ["BASIS_TEXT", "Basis", "Throughput", "throughput"]
