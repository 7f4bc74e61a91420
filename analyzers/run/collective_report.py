"""Collectives across ranks: exposed vs overlapped time per kind, matching, skew, bus bandwidth.

* **exposed / overlapped** per kind come from each rank's partition: a family's exclusive time
  is exposed (nothing of higher priority hid it), its active time minus that is overlapped;
* **matching** (``analyzers.run.collective_match``): the i-th call of a kind on each rank of
  a group is one collective. Groups: ranks sharing (dp, pp) for TP collectives, sharing
  (dp, tp) for p2p; without identities all ranks form one group;
* **skew / stragglers**: per matched collective, each rank waits from its own arrival (the
  call's start) to the last rank's arrival; the last to arrive is the straggler. This needs
  the ranks' clocks to agree (the evidence names the clock);
* **bus bandwidth** (NCCL's convention: bytes / time times ``bus_factor``): message sizes
  come from the trace (``analyzers.rank.message_size``: Kineto's collective args, else the
  collective ops' recorded shapes); without them, for all-reduce, from the model config when
  a step holds exactly the all-reduces tensor parallelism issues (2 per layer, + 1 for the
  embedding on the first stage), each of ``tokens · hidden · dtype`` bytes. The time is the
  shortest duration among the ranks (the last arrival's, which does not include waiting).
  The row names its size source.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from analyzers.rank.digest import KINDS, RankDigest
from analyzers.read.run_facts import RunFacts
from analyzers.run.collective_match import kind_groups, match
from tracekit.core.analysis import CollectiveKind, CollectiveName, Collectives, RankWait

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def collectives(ranks: Sequence[RankDigest], facts: RunFacts | None) -> Collectives | None:
    per_kind: list[CollectiveKind] = []
    unsized: set[str] = set()
    alone: set[str] = set()
    wait = [0] * len(ranks)
    last = [0] * len(ranks)
    evidence: list[str] = []
    for kind in KINDS:
        calls = [r.calls.get(kind) for r in ranks]
        total = sum(len(c.start_ns) for c in calls if c is not None)
        if not total:
            continue
        exposed = sum(r.exposure[kind][0] for r in ranks if kind in r.exposure)
        overlapped = sum(r.exposure[kind][1] for r in ranks if kind in r.exposure)
        skews: list[int] = []
        sized = [0.0, 0.0]  # bus bytes, seconds
        sources: set[str] = set()
        for members in kind_groups(ranks, kind):
            if len(members) < 2:
                one = calls[members[0]]
                if one is not None and one.size_bytes is not None:
                    calls_n = len(one.size_bytes)
                    factor = bus_factors(kind, one.group_size, fallback_size(kind, None), calls_n)
                    if _add(sized, one.size_bytes, factor, one.dur_ns):
                        sources.add(one.size_source or "")
                        alone.add(kind)
                    elif (one.size_bytes > 0).any():
                        unsized.add(kind)
                continue
            got = match(ranks, kind, members)
            mine, n = got.calls, got.n
            if len(set(got.counts)) > 1:
                evidence.append(
                    f"{kind}: call counts differ across a group ({list(got.counts)}); matched "
                    "in order up to the smallest"
                )
            skews += (got.arrive - got.starts.min(axis=0)).tolist()
            delays, late = got.waits, got.late
            for j, i in enumerate(members):
                wait[i] += int(delays[j].sum())
                last[i] += int((late == j).sum())
            size = mine[0].size_bytes
            if size is None:
                continue
            known = mine[0].group_size[:n] if mine[0].group_size is not None else None
            factor = bus_factors(kind, known, fallback_size(kind, len(members), ranks, facts), n)
            if _add(sized, size[:n], factor, got.durs.min(axis=0)):
                sources.add(mine[0].size_source or "")
            elif (size[:n] > 0).any():
                unsized.add(kind)
        row, error = _kind(kind, total, exposed, overlapped, skews, sized, facts, sources)
        per_kind.append(row)
        evidence += [error] if error else []
    if not per_kind:
        return None
    if alone:
        evidence.append(
            f"{', '.join(sorted(alone))}: bus bandwidth includes calls seen on one rank only, "
            "timed by that rank (its wait for the others included): a lower bound"
        )
    if unsized:
        evidence.append(
            f"{', '.join(sorted(unsized))}: message sizes known but not the communicator's "
            "size (neither the layout nor a complete set of ranks says it): no bus bandwidth"
        )
    clocks = sorted({r.result.clock for r in ranks})
    evidence.append(f"cross-rank matching assumes the ranks' clocks agree ({', '.join(clocks)})")
    waits = [
        RankWait(r.result.label, wait[i], last[i])
        for i, r in enumerate(ranks)
        if wait[i] or last[i]
    ]
    return Collectives(kinds=per_kind, waits=waits, evidence=evidence)


def fallback_size(
    kind: CollectiveName,
    members: int | None,
    ranks: Sequence[RankDigest] = (),
    facts: RunFacts | None = None,
) -> int | None:
    """The communicator size where the trace's ``Group size`` is missing: the layout's TP
    degree for TP groups, else the matched ranks when the traces hold the whole world."""
    if kind == "p2p" or members is None:
        return None
    if facts is not None and facts.layout.tp > 1:
        return facts.layout.tp
    worlds = {r.identity.world_size for r in ranks}
    return members if worlds == {len(ranks)} else None


def bus_factors(kind: str, group: I64 | None, fallback: int | None, calls: int) -> F64:
    """Per call (``calls`` of them), NCCL's bus-bandwidth factor (nccl-tests'
    PERFORMANCE.md) over a communicator of n ranks (the call's ``Group size``, else
    ``fallback``): all-reduce 2 (n − 1) / n; all-gather, reduce-scatter and all-to-all
    (n − 1) / n; p2p and others (broadcast) 1. NaN where n is unknown; 0 for a communicator
    of one (nothing moves)."""
    n: F64 = np.full(calls, np.nan if fallback is None else float(fallback))
    if group is not None:
        known = group[:calls]
        n[: len(known)] = np.where(known > 0, known, n[: len(known)])
    if kind in ("p2p", "other_collective"):
        moves: F64 = np.where(n == 1, 0.0, 1.0)
        return moves
    factor: F64 = (n - 1) / n
    if kind == "all_reduce":
        factor = factor * 2.0
    return factor


def _add(sized: list[float], size: F64, factor: F64, dur_ns: I64) -> bool:
    """Add calls of known size and factor to (bus bytes, seconds); False if none is."""
    ok = (size > 0) & (factor > 0)  # NaN (unknown n) compares False
    if not ok.any():
        return False
    sized[0] += float((size[ok] * factor[ok]).sum())
    sized[1] += float(dur_ns[ok].sum()) / 1e9
    return True


def _kind(
    kind: CollectiveName,
    total: int,
    exposed: int,
    overlapped: int,
    skews: list[int],
    sized: list[float],
    facts: RunFacts | None,
    sources: set[str],
) -> tuple[CollectiveKind, str | None]:
    bus = sized[0] / sized[1] if sized[1] > 0 else None
    peak = facts.spec.interconnect if facts is not None and facts.spec is not None else None
    pct = 100 * bus / peak if bus is not None and peak else None
    error = (
        f"{kind}: bus bandwidth from {'; '.join(sorted(sources))} is {pct:.0f}% of the "
        "interconnect peak: a model error (message sizes or the peak are wrong), not a "
        "measurement"
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
        size_source="; ".join(sorted(sources)) if bus is not None else None,
    )
    return row, error
