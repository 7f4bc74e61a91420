"""Matching collective calls across ranks: the i-th call of a kind on each rank of a group is
one collective (NCCL and vLLM's shared-memory collectives run in issue order).

Groups: ranks sharing (dp, pp) for TP collectives, sharing (dp, tp) for p2p; without
identities all ranks form one group. A rank arrives at a call when it starts it; it waits
from its own arrival to the last rank's. Both the collectives report
(``analyzers.run.collective_report``) and the stragglers report (``analyzers.run.stragglers``)
read the arrivals from here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analyzers.rank.digest import KindCalls, RankDigest

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Matched:
    """One group's calls of one kind, matched in order up to the smallest count."""

    members: tuple[int, ...]  # indexes into the run's ranks
    calls: tuple[KindCalls, ...]  # each member's calls (all of them)
    counts: tuple[int, ...]  # each member's call count, before matching
    starts: I64  # (members, matched): each member's arrival at the i-th call
    durs: I64  # (members, matched)

    @property
    def n(self) -> int:
        return int(self.starts.shape[1])

    @property
    def arrive(self) -> I64:
        """Per matched call, the last arrival."""
        last: I64 = self.starts.max(axis=0)
        return last

    @property
    def waits(self) -> I64:
        """(members, matched): each member's wait for the last arrival."""
        waits: I64 = self.arrive - self.starts
        return waits

    @property
    def late(self) -> npt.NDArray[np.intp]:
        """Per matched call, the position (in ``members``) of the last to arrive."""
        late: npt.NDArray[np.intp] = self.starts.argmax(axis=0)
        return late


def group_key(rank: RankDigest, kind: str) -> tuple[int | None, ...]:
    ident = rank.identity
    return (ident.dp, ident.tp) if kind == "p2p" else (ident.dp, ident.pp)


def kind_groups(ranks: Sequence[RankDigest], kind: str) -> list[list[int]]:
    """The groups (rank indexes, in rank order) of the ranks holding calls of ``kind``."""
    groups: dict[tuple[int | None, ...], list[int]] = defaultdict(list)
    for i, r in enumerate(ranks):
        if kind in r.calls:
            groups[group_key(r, kind)].append(i)
    return list(groups.values())


def match(ranks: Sequence[RankDigest], kind: str, members: Sequence[int]) -> Matched:
    """The group's calls of ``kind`` matched in order (a group of two or more ranks)."""
    calls = tuple(ranks[i].calls[kind] for i in members)
    counts = tuple(len(c.start_ns) for c in calls)
    n = min(counts)
    starts = np.array([c.start_ns[:n] for c in calls], dtype=np.int64).reshape(len(calls), n)
    durs = np.array([c.dur_ns[:n] for c in calls], dtype=np.int64).reshape(len(calls), n)
    return Matched(tuple(members), calls, counts, starts, durs)
