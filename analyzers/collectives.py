"""Collectives across ranks: exposed vs overlapped time per kind, matching, skew, bus bandwidth.

* **exposed / overlapped** per kind come from each rank's partition: a family's exclusive time
  is exposed (nothing of higher priority hid it), its active time minus that is overlapped;
* **matching**: the i-th call of a kind on each rank of a group is one collective (NCCL and
  vLLM's shared-memory collectives run in issue order). Groups: ranks sharing (dp, pp) for
  TP collectives, sharing (dp, tp) for p2p; without identities all ranks form one group;
* **skew / stragglers**: per matched collective, each rank waits from its own arrival (the
  call's start) to the last rank's arrival; the last to arrive is the straggler. This needs
  the ranks' clocks to agree (the evidence names the clock);
* **bus bandwidth** (NCCL's convention, 2 · (n − 1) / n · bytes / time for all-reduce):
  sizes come from the model config when a step holds exactly the all-reduces tensor
  parallelism issues (2 per layer, + 1 for the embedding on the first stage), each of
  ``tokens · hidden · dtype`` bytes; the time is the shortest duration among the ranks (the
  last arrival's, which does not include waiting). The trace's own message sizes (Kineto's
  NCCL args) are not parsed yet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from analyzers.classify import FAMILY_INDEX, LEVELS
from analyzers.roofline import RunFacts, step_windows
from tracekit.analysis import CollectiveKind, Collectives, RankWait
from tracekit.model import DEVICE_KINDS, Events, Kind

if TYPE_CHECKING:
    from analyzers.pipeline import RankState

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "other_collective", "p2p")


def calls(state: RankState, kind: str) -> npt.NDArray[np.intp]:
    """Rows of this rank's calls of ``kind`` in time order; nested calls count once."""
    ev, att = state.trace.events, state.attribution
    if att is None:
        return np.zeros(0, dtype=np.intp)
    kinds = DEVICE_KINDS if att.device == "gpu" else (Kind.CPU_OP,)
    rows = np.flatnonzero(np.isin(ev.kind, kinds) & (att.op_family == FAMILY_INDEX[kind]))
    if not len(rows):
        return rows
    order = np.lexsort((-ev.dur_ns[rows], ev.start_ns[rows]))
    rows = rows[order]
    keep = np.ones(len(rows), dtype=bool)
    reach: dict[tuple[int, int], int] = {}
    for i, row in enumerate(rows.tolist()):
        thread = (int(ev.pid[row]), int(ev.tid[row]))
        if int(ev.start_ns[row]) < reach.get(thread, -1):
            keep[i] = False  # inside an outer call of the same kind
            continue
        reach[thread] = int(ev.start_ns[row]) + int(ev.dur_ns[row])
    return rows[keep]


def _group(state: RankState, kind: str) -> tuple[int | None, ...]:
    ident = state.trace.id
    return (ident.dp, ident.tp) if kind == "p2p" else (ident.dp, ident.pp)


def collectives(states: Sequence[RankState], facts: RunFacts | None) -> Collectives | None:
    per_kind: list[CollectiveKind] = []
    wait = [0] * len(states)
    last = [0] * len(states)
    evidence: list[str] = []
    for kind in KINDS:
        rows = [calls(s, kind) for s in states]
        total = sum(len(r) for r in rows)
        if not total:
            continue
        exposed, overlapped = _exposure(states, kind)
        groups: dict[tuple[int | None, ...], list[int]] = defaultdict(list)
        for i, s in enumerate(states):
            if len(rows[i]):
                groups[_group(s, kind)].append(i)
        skews: list[int] = []
        sized = [0.0, 0.0]  # bus bytes, seconds
        for members in groups.values():
            if len(members) < 2:
                continue
            counts = [len(rows[i]) for i in members]
            if len(set(counts)) > 1:
                evidence.append(
                    f"{kind}: call counts differ across a group ({counts}); matched in "
                    "order up to the smallest"
                )
            n = min(counts)
            starts = np.array([states[i].trace.events.start_ns[rows[i][:n]] for i in members])
            durs = np.array([states[i].trace.events.dur_ns[rows[i][:n]] for i in members])
            arrive = starts.max(axis=0)
            skews += (arrive - starts.min(axis=0)).tolist()
            late = starts.argmax(axis=0)
            for j, i in enumerate(members):
                wait[i] += int((arrive - starts[j]).sum())
                last[i] += int((late == j).sum())
            if kind == "all_reduce" and facts is not None:
                size = _allreduce_bytes(states[members[0]], rows[members[0]][:n], facts)
                if size is not None:
                    ok = size > 0
                    factor = 2 * (len(members) - 1) / len(members)
                    sized[0] += float(size[ok].sum()) * factor
                    sized[1] += float(durs.min(axis=0)[ok].sum()) / 1e9
        row, error = _kind(kind, total, exposed, overlapped, skews, sized, facts)
        per_kind.append(row)
        evidence += [error] if error else []
    if not per_kind:
        return None
    clocks = sorted({s.trace.clock for s in states})
    evidence.append(f"cross-rank matching assumes the ranks' clocks agree ({', '.join(clocks)})")
    waits = [
        RankWait(s.trace.id.label, wait[i], last[i])
        for i, s in enumerate(states)
        if wait[i] or last[i]
    ]
    return Collectives(kinds=per_kind, waits=waits, evidence=evidence)


def _exposure(states: Sequence[RankState], kind: str) -> tuple[int, int]:
    level = LEVELS.index(kind)
    exposed = overlapped = 0
    for s in states:
        if s.attribution is None:
            continue
        part = s.attribution.partition
        exposed += int(part.exclusive_ns[level])
        overlapped += int(part.active_ns[level] - part.exclusive_ns[level])
    return exposed, overlapped


def _allreduce_bytes(
    state: RankState, rows: npt.NDArray[np.intp], facts: RunFacts
) -> npt.NDArray[np.float64] | None:
    """Per call: tokens · hidden · dtype bytes when its step holds the TP all-reduces, else 0."""
    m, steps = facts.model, state.steps
    if m is None or not steps or facts.layout.tp < 2:
        return None
    ev: Events = state.trace.events
    shard = facts.shard(state.trace.id)
    expected = 2 * shard.layers(m.layers) + (1 if shard.stage == 0 else 0)
    device = state.attribution.device if state.attribution is not None else "cpu"
    starts, ends = step_windows(ev, steps, device)
    at = np.searchsorted(starts, ev.start_ns[rows], side="right") - 1
    inside = (at >= 0) & (ev.start_ns[rows] < ends[np.clip(at, 0, None)])
    per_step = np.bincount(at[inside], minlength=len(steps))
    tokens = np.array([s.context_tokens + s.generation_tokens for s in steps], dtype=np.float64)
    size = np.zeros(len(rows), dtype=np.float64)
    good = inside & (per_step[np.clip(at, 0, None)] == expected)
    size[good] = tokens[at[good]] * m.hidden * m.dtype_bytes
    return size if good.any() else None


def _kind(
    kind: str,
    total: int,
    exposed: int,
    overlapped: int,
    skews: list[int],
    sized: list[float],
    facts: RunFacts | None,
) -> tuple[CollectiveKind, str | None]:
    bus = sized[0] / sized[1] if sized[1] > 0 else None
    peak = facts.spec.interconnect if facts is not None and facts.spec is not None else None
    pct = 100 * bus / peak if bus is not None and peak else None
    error = (
        f"{kind}: modelled bus bandwidth is {pct:.0f}% of the interconnect peak: a model "
        "error (message sizes or the peak are wrong), not a measurement"
        if pct is not None and pct > 100
        else None
    )
    row = CollectiveKind(
        kind=kind,
        calls=total,
        exposed_ns=exposed,
        overlapped_ns=overlapped,
        matched=len(skews),
        skew_mean_ns=int(np.mean(skews)) if skews else 0,
        skew_max_ns=int(max(skews)) if skews else 0,
        bus_bandwidth=bus if pct is None or pct <= 100 else None,
        bus_bandwidth_pct=round(pct, 3) if pct is not None and pct <= 100 else None,
        size_source="model config + step tokens" if bus is not None else None,
    )
    return row, error
