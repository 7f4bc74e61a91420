"""What a run settles across all its ranks before any stage runs: identities, peaks, window.

From round 1's headers (``analyzers.engine.file_jobs``):

* **identities**: ranks that name themselves nowhere are numbered in file order, duplicates are
  an error, and the rank order is (dp, pp, tp, ep, rank) (``loader.settle_identities``);
* **peaks**: the run is judged against the first device the spec table knows, in rank order
  (``run_facts.device_spec``), so every rank's stages use the same peaks (unless the caller
  gave peaks in ``RunFacts.spec``);
* **window**: every rank is analysed over the span in which all were profiled
  (``analyzers.run.window``), narrowed to its steady state (after warm-up and ramp, before
  drain) unless the whole window is asked for (``analyzers.run.steady_state``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from analyzers.engine.stage_log import FileStats
from analyzers.read.loader import settle_identities
from analyzers.read.run_facts import RunFacts, device_spec
from analyzers.run.steady_state import Asked, EngineSteps, StepSpan, inside, record_spans
from analyzers.run.steady_state import steady_window as choose_window
from analyzers.run.window import Window, common_window
from tracekit.core.steady_state import SteadyState
from tracekit.core.trace_model import RankId


@dataclass(frozen=True)
class RankHeader:
    """What round 1 says of one rank: all the run needs to settle identities, peaks, window."""

    identity: RankId  # as the file gives it (``loader.rank_trace``)
    path: str
    has_device: bool
    device_keys: tuple[str, ...]  # what the spec table is looked up by (``RankTrace``)
    own: Window  # the span it was profiled over (``attribute.own_window``)
    steps: tuple[StepSpan, ...] = ()  # its vLLM step annotations (``steady_state``)


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
    window: Window | None  # the run's analysed window (None: each rank's own)


@dataclass(frozen=True)
class SettledRun:
    """Per file read in round 1 (None for an unreadable one): what its ranks are settled to;
    and every rank, as (file index, rank in file), in rank order."""

    files: tuple[Settled | None, ...]
    order: tuple[tuple[int, int], ...]
    identities: tuple[RankId, ...]  # in rank order
    facts: RunFacts  # with the run's peaks
    window: Window | None  # the run's analysed window (None: each rank's own)
    steady: SteadyState | None = None  # the analysed window against the whole (None: no window)


def settle(
    facts: RunFacts,
    manifest: dict[str, Any] | None,
    reads: Sequence[FileRead | None],
    asked: Asked = "steady",
) -> SettledRun:
    """Settle ``reads`` (None: a file that did not read) into one run, analysed over its
    steady window, or over the whole one where ``asked`` is "whole"."""
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
    steady = None
    whole = window if len(headers) > 1 else headers[0].own if headers else None
    if whole is not None and whole[1] > whole[0]:
        ordered = [(ids[k], headers[k]) for k in order]
        chosen, steady = choose_window(_engines(ordered, facts, whole), whole, asked, len(ids))
        window = chosen if chosen != whole or window is not None else None
    per_file: list[list[RankId]] = [[] for _ in reads]
    for (i, _), identity in zip(where, ids, strict=True):
        per_file[i].append(identity)
    files = tuple(
        Settled(tuple(per_file[i]), facts, window) if read else None for i, read in enumerate(reads)
    )
    return SettledRun(
        files, tuple(where[k] for k in order), tuple(ids[k] for k in order), facts, window, steady
    )


def _engines(
    ranks: Sequence[tuple[RankId, RankHeader]], facts: RunFacts, whole: Window
) -> list[EngineSteps]:
    """Each DP replica's steps in the whole window: the first of its ranks (in rank order)
    with step annotations, else the run's per-step records."""
    pp = max([facts.layout.pp] + [(i.pp or 0) + 1 for i, _ in ranks])
    found: dict[int, EngineSteps] = {}
    for identity, header in ranks:
        dp = identity.dp or 0
        spans = inside(header.steps, whole)
        if spans and dp not in found:
            found[dp] = EngineSteps(dp, f"{identity.label}'s step annotations", spans, pp)
    if found:
        return [found[k] for k in sorted(found)]
    return [replace(e, interleave=pp) for e in record_spans(facts.records, whole)]
