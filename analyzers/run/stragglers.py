"""Stragglers: per group of ranks that meet in collectives, who arrives last and who waits.

Every matched collective (``analyzers.run.collective_match``: the i-th call of a kind on each
rank of a group) has a last arrival; each other rank waits from its own arrival to it. Per
rank: the collectives it came last to and the waits that caused. Per engine step (the steps
of the group's first rank that has them; a collective belongs to the step holding its last
arrival) and per collective: who came last and the waits. A rank is named slow when it came
last consistently (``regime_table.STRAGGLER_*``), with the evidence: its kernel time (compute,
hbm and routing buckets) and host time against the median of the others, and the op of its
top ops furthest above the others'. p2p (pipeline send / recv) is left out: a receiver
waiting for its sender is the pipeline's order, which the bubbles report measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

import numpy as np
import numpy.typing as npt

from analyzers.rank.digest import KINDS, RankDigest
from analyzers.run.collective_match import Matched, kind_groups, match
from tracekit.core.buckets import COMPUTE, HBM, HOST, MOE_ROUTING
from tracekit.core.regime_table import (
    STRAGGLER_EXPLAINS,
    STRAGGLER_LAST_SHARE,
    STRAGGLER_MIN_CALLS,
    STRAGGLER_WAIT_SHARE,
    STRAGGLER_WORST,
)
from tracekit.core.stragglers import (
    CollectiveWait,
    RankArrivals,
    SlowRank,
    StepWait,
    StragglerGroup,
    Stragglers,
)

I64 = npt.NDArray[np.int64]
KERNEL_BUCKETS = (COMPUTE, HBM, MOE_ROUTING)
P2P = "p2p (pipeline send / recv) left out: the bubbles report measures it"


class _Calls:
    """A group's matched collectives of every kind (but p2p), side by side."""

    def __init__(self, matched: list[tuple[str, Matched]]) -> None:
        self.kind = [k for k, m in matched for _ in range(m.n)]
        self.call = np.concatenate([np.arange(m.n) for _, m in matched])
        self.arrive: I64 = np.concatenate([m.arrive for _, m in matched])
        self.first: I64 = np.concatenate([m.starts.min(axis=0) for _, m in matched])
        self.late = np.concatenate([m.late for _, m in matched])
        self.waits: I64 = np.hstack([m.waits for _, m in matched])  # (members, calls)
        self.kinds = sorted({k for k, _ in matched})


def stragglers(ranks: Sequence[RankDigest]) -> Stragglers | None:
    """The report; None where no collective is matched across two ranks (p2p only: an
    empty report that says so)."""
    by_group: dict[tuple[int, ...], list[tuple[str, Matched]]] = {}
    p2p = False
    for kind in KINDS:
        for group in kind_groups(ranks, kind):
            if len(group) < 2:
                continue
            if kind == "p2p":
                p2p = True
                continue
            got = match(ranks, kind, group)
            if got.n:
                by_group.setdefault(tuple(group), []).append((kind, got))
    if not by_group:
        return _p2p_only() if p2p else None
    groups: list[StragglerGroup] = []
    slow: list[SlowRank] = []
    steps: list[StepWait] = []
    worst: list[CollectiveWait] = []
    evidence: list[str] = []
    for members, matched in by_group.items():
        name = group_name(ranks, members)
        calls = _Calls(matched)
        arrivals = _group(ranks, members, name, calls)
        groups.append(arrivals)
        named = _slow(ranks, members, arrivals)
        if named is not None:
            slow.append(named)
        else:
            evidence.append(_not_named(arrivals))
        in_steps, note = _steps(ranks, members, name, calls)
        steps += in_steps
        evidence += [note] if note else []
        worst += _collectives(ranks, members, name, calls)
    worst.sort(key=lambda c: (-c.wait_ns, c.arrival_ns))
    steps.sort(key=lambda s: (s.start_ns, s.group))
    if p2p:
        evidence.append(P2P)
    return Stragglers(
        groups=groups,
        slow=slow,
        steps=steps,
        worst=worst[:STRAGGLER_WORST],
        evidence=evidence,
    )


def _p2p_only() -> Stragglers:
    return Stragglers(groups=[], slow=[], steps=[], worst=[], evidence=[P2P])


def group_name(ranks: Sequence[RankDigest], members: Sequence[int]) -> str:
    """The group's (dp, pp) as "dp0 pp1" (the parts its ranks record), else "all ranks"."""
    ident = ranks[members[0]].identity
    parts = [f"{k}{v}" for k, v in (("dp", ident.dp), ("pp", ident.pp)) if v is not None]
    return " ".join(parts) or "all ranks"


def _kernel_ns(rank: RankDigest) -> int:
    return sum(rank.result.buckets[b] for b in KERNEL_BUCKETS)


def _group(
    ranks: Sequence[RankDigest], members: tuple[int, ...], name: str, calls: _Calls
) -> StragglerGroup:
    rows = []
    for j, i in enumerate(members):
        mine = calls.late == j
        rows.append(
            RankArrivals(
                label=ranks[i].result.label,
                matched=len(calls.late),
                last=int(mine.sum()),
                wait_ns=int(calls.waits[j].sum()),
                caused_ns=int(calls.waits[:, mine].sum()),
                kernel_ns=_kernel_ns(ranks[i]),
                host_ns=ranks[i].result.buckets[HOST],
            )
        )
    return StragglerGroup(group=name, matched=len(calls.late), kinds=calls.kinds, ranks=rows)


def _slow(
    ranks: Sequence[RankDigest], members: tuple[int, ...], group: StragglerGroup
) -> SlowRank | None:
    j = max(range(len(members)), key=lambda k: (group.ranks[k].last, group.ranks[k].caused_ns))
    me = group.ranks[j]
    others = [r for k, r in enumerate(group.ranks) if k != j]
    windows = sum(ranks[i].result.window_ns for k, i in enumerate(members) if k != j)
    share = me.last / group.matched
    if (
        group.matched < STRAGGLER_MIN_CALLS
        or share < STRAGGLER_LAST_SHARE
        or me.caused_ns < STRAGGLER_WAIT_SHARE * windows
    ):
        return None
    kernel = int(median(r.kernel_ns for r in others))
    host = int(median(r.host_ns for r in others))
    lateness = me.caused_ns / len(others)  # the others' wait for it, per rank
    excess = {"kernels": me.kernel_ns - kernel, "host": me.host_ns - host}
    cause = max(excess, key=lambda k: excess[k])
    if excess[cause] < STRAGGLER_EXPLAINS * lateness:
        cause = "unexplained"
    op = _op(ranks[members[j]], [ranks[i] for k, i in enumerate(members) if k != j])
    return SlowRank(
        label=me.label,
        group=group.group,
        last_share=round(share, 4),
        caused_ns=me.caused_ns,
        caused_share=round(me.caused_ns / windows, 4) if windows else 0.0,
        cause=cause,  # type: ignore[arg-type]
        kernel_ns=me.kernel_ns,
        others_kernel_ns=kernel,
        host_ns=me.host_ns,
        others_host_ns=host,
        op=op[0] if op else None,
        op_ns=op[1] if op else None,
        others_op_ns=op[2] if op else None,
    )


def _op_times(rank: RankDigest) -> dict[str, int]:
    out: dict[str, int] = {}
    for op in rank.result.top_ops:
        if op.bucket in KERNEL_BUCKETS:
            out[op.name] = out.get(op.name, 0) + op.total_ns
    return out


def _op(me: RankDigest, others: list[RankDigest]) -> tuple[str, int, int] | None:
    """Of ``me``'s top kernel ops that every other rank lists too, the one furthest above
    the others' median time (None where none is above it)."""
    theirs = [_op_times(r) for r in others]
    best: tuple[int, str, int, int] | None = None
    for name, ns in _op_times(me).items():
        if not all(name in t for t in theirs):
            continue
        typical = int(median(t[name] for t in theirs))
        if ns > typical and (best is None or (ns - typical, name) > (best[0], best[1])):
            best = (ns - typical, name, ns, typical)
    return (best[1], best[2], best[3]) if best else None


def _not_named(group: StragglerGroup) -> str:
    top = max(group.ranks, key=lambda r: (r.last, r.caused_ns))
    return (
        f"{group.group}: no straggler ({top.label} arrived last most often, at {top.last} of "
        f"{group.matched} collectives; naming one takes {STRAGGLER_LAST_SHARE:.0%} of at least "
        f"{STRAGGLER_MIN_CALLS}, with waits of {STRAGGLER_WAIT_SHARE:.0%} of the others' time)"
    )


def _steps(
    ranks: Sequence[RankDigest], members: tuple[int, ...], name: str, calls: _Calls
) -> tuple[list[StepWait], str | None]:
    stepped = next((i for i in members if ranks[i].step_start_ns is not None), None)
    if stepped is None:
        return [], f"{name}: no engine steps in the traces: waits per collective only"
    rank = ranks[stepped]
    starts, ends = rank.step_start_ns, rank.step_end_ns
    assert starts is not None and ends is not None
    at = np.searchsorted(starts, calls.arrive, side="right") - 1
    inside = (at >= 0) & (calls.arrive < ends[np.clip(at, 0, None)])
    out = []
    labels = [ranks[i].result.label for i in members]
    for step in np.unique(at[inside]).tolist():
        rows = np.flatnonzero(inside & (at == step))
        late = calls.late[rows]
        counts = np.bincount(late, minlength=len(members))
        caused = [int(calls.waits[:, rows[late == j]].sum()) for j in range(len(members))]
        j = max(range(len(members)), key=lambda k: (int(counts[k]), caused[k]))
        out.append(
            StepWait(
                group=name,
                step=step,
                start_ns=int(starts[step]),
                kind=rank.result.steps[step].kind,
                collectives=len(rows),
                last=labels[j],
                last_calls=int(counts[j]),
                wait_ns=int(calls.waits[:, rows].sum()),
            )
        )
    return out, None


def _collectives(
    ranks: Sequence[RankDigest], members: tuple[int, ...], name: str, calls: _Calls
) -> list[CollectiveWait]:
    total = calls.waits.sum(axis=0)
    top = np.lexsort((calls.arrive, -total))[:STRAGGLER_WORST]
    return [
        CollectiveWait(
            group=name,
            kind=calls.kind[c],
            call=int(calls.call[c]),
            arrival_ns=int(calls.arrive[c]),
            last=ranks[members[int(calls.late[c])]].result.label,
            wait_ns=int(total[c]),
            skew_ns=int(calls.arrive[c] - calls.first[c]),
        )
        for c in top.tolist()
        if total[c] > 0
    ]
