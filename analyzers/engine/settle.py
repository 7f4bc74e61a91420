"""What a run settles across all its ranks before any stage runs: identities, peaks, window.

From round 1's headers (``analyzers.engine.file_jobs``):

* **identities**: ranks that name themselves nowhere are numbered in file order, duplicates are
  an error, and the rank order is (dp, pp, tp, ep, rank) (``loader.settle_identities``);
* **peaks**: the run is judged against the first device the spec table knows, in rank order
  (``run_facts.device_spec``), so every rank's stages use the same peaks (unless the caller
  gave peaks in ``RunFacts.spec``);
* **window**: every rank is analysed over the span in which all were profiled
  (``analyzers.run.window``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from analyzers.engine.stage_log import FileStats
from analyzers.read.loader import settle_identities
from analyzers.read.run_facts import RunFacts, device_spec
from analyzers.run.window import Window, common_window
from tracekit.core.trace_model import RankId


@dataclass(frozen=True)
class RankHeader:
    """What round 1 says of one rank: all the run needs to settle identities, peaks, window."""

    identity: RankId  # as the file gives it (``loader.rank_trace``)
    path: str
    has_device: bool
    device_keys: tuple[str, ...]  # what the spec table is looked up by (``RankTrace``)
    own: Window  # the span it was profiled over (``attribute.own_window``)


@dataclass(frozen=True)
class FileRead:
    """Round 1's answer for one file."""

    headers: tuple[RankHeader, ...]
    stats: FileStats
    spill_error: str | None = None  # why the parsed ranks could not be kept for round 2


@dataclass(frozen=True)
class Settled:
    """What the run settled across every rank, for the ranks of one file (in file order)."""

    identities: tuple[RankId, ...]
    facts: RunFacts  # with the run's peaks (``facts.spec``)
    window: Window | None  # the run's common window (None: each rank's own)


@dataclass(frozen=True)
class SettledRun:
    """Per file read in round 1 (None for an unreadable one): what its ranks are settled to;
    and every rank, as (file index, rank in file), in rank order."""

    files: tuple[Settled | None, ...]
    order: tuple[tuple[int, int], ...]
    identities: tuple[RankId, ...]  # in rank order
    facts: RunFacts  # with the run's peaks
    window: Window | None  # the run's common window (None: each rank's own)


def settle(
    facts: RunFacts, manifest: dict[str, Any] | None, reads: Sequence[FileRead | None]
) -> SettledRun:
    """Settle ``reads`` (None: a file that did not read) into one run."""
    where = [(i, k) for i, read in enumerate(reads) if read for k in range(len(read.headers))]
    headers = [reads[i].headers[k] for i, k in where]  # type: ignore[union-attr]
    ids, order = settle_identities([(h.identity, h.path) for h in headers])
    if facts.spec is None:  # peaks a caller chose (``facts.spec``) stand
        spec, note = device_spec(
            any(headers[k].has_device for k in order),
            [n for k in order for n in headers[k].device_keys],
            manifest,
        )
        facts = replace(facts, spec=spec, spec_note=note)
    window = common_window([h.own for h in headers])
    per_file: list[list[RankId]] = [[] for _ in reads]
    for (i, _), identity in zip(where, ids, strict=True):
        per_file[i].append(identity)
    files = tuple(
        Settled(tuple(per_file[i]), facts, window) if read else None for i, read in enumerate(reads)
    )
    return SettledRun(
        files, tuple(where[k] for k in order), tuple(ids[k] for k in order), facts, window
    )
