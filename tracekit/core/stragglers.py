"""The stragglers report's structs (part of the Analysis, ``Analysis.stragglers``).

Per group of ranks that meet in collectives (TP groups: ranks sharing dp and pp), each
matched collective has a last arrival; the others wait for it. The report gives, per rank,
how often it came last and the waits it caused; per engine step and per collective, who came
last and how long the others waited; and names a rank that is consistently last, with the
evidence (its kernel time and host time against the others'). ``analyzers/run/stragglers.py``
builds it; p2p (pipeline send / recv) is left to the bubbles report.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class RankArrivals(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    matched: int  # matched collectives of its group it took part in
    last: int  # ... that it arrived at last
    wait_ns: int  # its own waits for the last arrival, over them
    caused_ns: int  # the other ranks' waits at the collectives it arrived at last
    kernel_ns: int  # compute + hbm + moe_routing buckets (GPU: kernels; CPU: op self time)
    host_ns: int  # host bucket: the device idle while the host is busy


class StragglerGroup(msgspec.Struct, frozen=True, kw_only=True):
    group: str  # "dp0 pp0", or "all ranks" without identities
    matched: int  # matched collectives, all kinds but p2p
    kinds: list[str]  # the collective kinds matched
    ranks: list[RankArrivals]


class SlowRank(msgspec.Struct, frozen=True, kw_only=True):
    """A rank that arrived last at most of its group's collectives, with the evidence."""

    label: str
    group: str
    last_share: float  # of its group's matched collectives
    caused_ns: int  # the others' waits at the collectives it arrived at last
    caused_share: float  # of the other ranks' analysed windows
    # what its excess is in: "kernels" (compute / hbm / routing time above the others'),
    # "host" (host time above the others'), or "unexplained" (neither: a late launch, a
    # clock offset, work outside the window)
    cause: Literal["kernels", "host", "unexplained"]
    kernel_ns: int
    others_kernel_ns: int  # median of the group's other ranks
    host_ns: int
    others_host_ns: int
    op: str | None = None  # of its top ops, the one furthest above the others' median
    op_ns: int | None = None
    others_op_ns: int | None = None


class StepWait(msgspec.Struct, frozen=True, kw_only=True):
    """One engine step's matched collectives (assigned by their last arrival)."""

    group: str
    step: int  # index in the steps of the group's first rank with steps
    start_ns: int
    kind: str  # prefill / decode / mixed
    collectives: int
    last: str  # the rank that arrived last most often in the step
    last_calls: int
    wait_ns: int  # the ranks' waits over the step's collectives, summed


class CollectiveWait(msgspec.Struct, frozen=True, kw_only=True):
    """One matched collective: who arrived last and how long the others waited."""

    group: str
    kind: str  # a collective kind (``analysis.CollectiveName``), never p2p
    call: int  # the i-th call of its kind on each rank of the group
    arrival_ns: int  # the last arrival
    last: str
    wait_ns: int  # the other ranks' waits, summed
    skew_ns: int  # last − first arrival


class Stragglers(msgspec.Struct, frozen=True, kw_only=True):
    groups: list[StragglerGroup]
    slow: list[SlowRank]  # at most one per group
    steps: list[StepWait]  # every step holding a matched collective, in time order
    worst: list[CollectiveWait]  # the collectives with the longest waits, longest first
    evidence: list[str]
