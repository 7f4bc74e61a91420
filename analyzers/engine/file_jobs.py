"""What a worker does with one trace file, in the driver's two rounds (``analyzers.engine.driver``).

1. ``read_file``: parse the file once, and say of each rank what the run must settle before any
   stage runs: its identity as the file gives it, its devices (for the peaks) and the span it was
   profiled over (for the common window). Where more rounds follow, the parsed ranks are kept in
   a spill file beside the worker (a pickle of the columnar tables: no JSON is decoded again).
2. ``analyze_file``: take the parsed ranks back from the spill file (and delete it), set on each
   what the run settled (``Settled``: identity, peaks, window) and run the per-rank stages. What
   goes back to the parent is each rank's digest: kilobytes, whatever the trace's size.

A run of one file settles from that file alone, so ``read_and_analyze`` does both in one task
and nothing is spilled. Jobs and results are plain picklable data, so the same functions run in
this process, in a process pool or as Ray tasks.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from analyzers.engine.process_pool import parse_file
from analyzers.engine.settle import FileRead, RankHeader, Settled, SettledRun, settle
from analyzers.engine.stage_log import FileStats, family_counts
from analyzers.rank.attribute import own_window
from analyzers.rank.classify import LEVELS, classify_events
from analyzers.rank.digest import RankDigest, digest
from analyzers.rank.op_table import op_table
from analyzers.rank.rank_result import rank_result
from analyzers.rank.rank_stages import RANK_STAGES, RankState, Stage, run_stages
from analyzers.read.discover import TraceFile
from analyzers.read.loader import rank_trace
from analyzers.read.run_facts import RunFacts
from analyzers.run.steady_state import Asked, annotation_spans
from tracekit.core.partition import RankPartition
from tracekit.core.trace_model import NameTable, RankTrace


@dataclass(frozen=True)
class FileJob:
    """One trace file: where it is, what the run directory says, and the stages to run."""

    file: TraceFile
    facts: RunFacts  # what the run directory says (without peaks until settled)
    manifest: dict[str, Any] | None
    stages: tuple[Stage, ...] = RANK_STAGES
    spill: str | None = None  # the folder round 1 leaves the parsed ranks in (None: one round)
    index: int = 0  # the file's place in the run (names its spill file)
    settled: Settled | None = None  # round 2: what the run settled for this file's ranks
    keep_partitions: bool = False  # send back each rank's partition (for a timeline)
    keep_ops: bool = False  # send back each rank's op table (for a diff)
    asked: Asked = "steady"  # the window to analyse: the steady one, or the whole one


@dataclass(frozen=True)
class RankOut:
    """One rank of a file, analysed."""

    digest: RankDigest
    stats: FileStats


def read_file(job: FileJob) -> FileRead:
    """Round 1: parse, describe each rank, and spill the parsed ranks for round 2."""
    ranks, names, stats = _parse(job)
    error = None
    if job.spill is not None:
        try:
            os.makedirs(job.spill, exist_ok=True)
            with open(spill_path(job), "wb") as out:
                pickle.dump((ranks, names), out, protocol=pickle.HIGHEST_PROTOCOL)
        except OSError as exc:  # the disk, not the trace: the parent stops the run
            error = exc.strerror or str(exc)
    return FileRead(tuple(header(r, names) for r in ranks), stats, error)


def analyze_file(job: FileJob) -> list[RankOut]:
    """Round 2: the ranks round 1 spilled, under what the run settled, through the stages."""
    if job.settled is None or job.spill is None:
        raise ValueError("analyze_file needs a settled job from round 1")
    path = spill_path(job)
    with open(path, "rb") as src:
        ranks, names = pickle.load(src)
    os.unlink(path)
    with contextlib.suppress(OSError):  # the last file of a node's spill folder removes it
        os.rmdir(job.spill)
    stats = FileStats(job.file.path.name, job.file.path.stat().st_size, 0.0, 0)
    return analyze_ranks(
        job.settled, ranks, names, stats, job.stages, job.keep_partitions, job.keep_ops
    )


def read_and_analyze(job: FileJob) -> tuple[FileRead, SettledRun, list[RankOut]]:
    """Both rounds in one task, for a run of one file: it settles from its own ranks."""
    ranks, names, stats = _parse(job)
    read = FileRead(tuple(header(r, names) for r in ranks), stats)
    run = settle(job.facts, job.manifest, [read], job.asked)
    settled = run.files[0]
    assert settled is not None
    outs = analyze_ranks(
        settled, ranks, names, stats, job.stages, job.keep_partitions, job.keep_ops
    )
    return read, run, outs


def header(rank: RankTrace, names: NameTable) -> RankHeader:
    own = own_window(rank.events, classify_events(rank.events, names))
    steps = annotation_spans(rank.events, names, "gpu" if rank.has_device else "cpu")
    return RankHeader(rank.id, rank.path, rank.has_device, rank.device_keys, own, steps)


def spill_path(job: FileJob) -> Path:
    return Path(job.spill or ".") / f"file-{job.index}.pickle"


def _parse(job: FileJob) -> tuple[list[RankTrace], NameTable, FileStats]:
    start = time.perf_counter()
    parsed = parse_file(job.file.path)
    took = time.perf_counter() - start
    names = NameTable()
    # An nsys export holds one rank per active (device, process) pair: the file name names a
    # rank only when the export holds just one.
    ranks = [rank_trace(job.file, one, names, alone=len(parsed) == 1) for one in parsed]
    size = job.file.path.stat().st_size
    stats = FileStats(job.file.path.name, size, took, sum(len(r.events) for r in ranks))
    return ranks, names, stats


def analyze_ranks(
    settled: Settled,
    ranks: Sequence[RankTrace],
    names: NameTable,
    stats: FileStats,
    stages: Sequence[Stage] = RANK_STAGES,
    keep_partitions: bool = False,
    keep_ops: bool = False,
) -> list[RankOut]:
    """The per-rank stages on ``ranks`` (one file's, or a loaded Trace's), as settled."""
    outs = []
    for rank, identity in zip(ranks, settled.identities, strict=True):
        state = RankState(
            replace(rank, id=identity), names, facts=settled.facts, window=settled.window
        )
        timings: list[tuple[str, float]] = []
        state = run_stages(state, stages, timings)
        result = digest(state, rank_result(state), settled.facts)
        if keep_partitions:
            result = replace(result, partition=partition_of(state))
        if keep_ops:
            result = replace(result, ops=op_table(state))
        rank_stats = replace(
            stats,
            events=len(rank.events),
            stages=tuple(timings),
            families=family_counts(state.family),
        )
        outs.append(RankOut(result, rank_stats))
    return outs


def partition_of(state: RankState) -> RankPartition | None:
    """The rank's segments as the stages left them (roofline and KV stalls relabel some)."""
    att = state.attribution
    if att is None:
        return None
    part = att.partition
    return RankPartition(part.bounds, att.segment_bucket, part.winner, LEVELS)
