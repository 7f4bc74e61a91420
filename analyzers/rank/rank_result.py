"""A rank's ``RankResult``: its buckets, families, steps, top ops and unclassified names."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from analyzers.rank.attribute import Attribution
from analyzers.rank.classify import FAMILIES, UNCLASSIFIED_INDEX
from analyzers.rank.graph_merge import graph_launches
from tracekit.core.analysis import NAME_PRIOR, OpTime, RankResult, Step
from tracekit.core.buckets import BUCKETS
from tracekit.core.trace_model import Kind

if TYPE_CHECKING:
    from analyzers.rank.rank_stages import RankState

TOP_PER_BUCKET = 5
TOP_UNCLASSIFIED = 10


def rank_result(state: RankState) -> RankResult:
    att, trace = state.attribution, state.trace
    if att is None or state.steps is None:
        raise ValueError("rank_result needs the attribute and steps stages")
    ev = trace.events
    top, unclassified = _op_tables(state, att)
    kinds = np.bincount(ev.kind, minlength=len(Kind))
    return RankResult(
        rank=trace.id.rank,
        identity=trace.id,
        label=trace.id.label,
        path=trace.path,
        device="gpu" if att.device == "gpu" else "cpu",
        devices=list(trace.devices),
        device_names=list(trace.device_names),
        clock=trace.clock,
        window_start_ns=att.window_start_ns,
        window_ns=att.window_ns,
        own_window_start_ns=att.own_start_ns,
        own_window_ns=att.own_ns,
        buckets=att.buckets,
        families=att.families,
        overlapped=att.overlapped,
        event_counts={k.name.lower(): int(kinds[k]) for k in Kind if kinds[k]},
        graph_kernels=_graph_kernels(state),
        top_ops=top,
        unclassified=unclassified,
        steps=[
            Step(
                s.start_ns,
                s.dur_ns,
                s.kind,
                s.context_requests,
                s.context_tokens,
                s.generation_requests,
                s.generation_tokens,
            )
            for s in state.steps
        ],
        ignored=dict(trace.ignored),
        compute_hbm_basis=state.roofline.basis if state.roofline else NAME_PRIOR,
        roofline=state.roofline,
        kv=state.kv,
    )


def _op_tables(state: RankState, att: Attribution) -> tuple[list[OpTime], list[OpTime]]:
    ev = state.trace.events
    rows = np.flatnonzero(att.op_ns > 0)
    if not len(rows):
        return [], []
    key = (ev.name_id[rows].astype(np.int64) * len(FAMILIES) + att.op_family[rows]) * len(
        BUCKETS
    ) + att.op_bucket[rows]
    keys, inverse = np.unique(key, return_inverse=True)
    totals = np.bincount(inverse, weights=att.op_ns[rows]).astype(np.int64)
    counts = np.bincount(inverse)
    ops = []
    for k, total, count in zip(keys.tolist(), totals.tolist(), counts.tolist(), strict=True):
        rest, bucket = divmod(k, len(BUCKETS))
        name_id, fam = divmod(rest, len(FAMILIES))
        ops.append(OpTime(state.names[name_id], FAMILIES[fam], BUCKETS[bucket], count, total))
    ops.sort(key=lambda o: (-o.total_ns, o.name))
    top: list[OpTime] = []
    for bucket in BUCKETS:
        top += [o for o in ops if o.bucket == bucket][:TOP_PER_BUCKET]
    top.sort(key=lambda o: (-o.total_ns, o.name))
    unclassified = [o for o in ops if o.family == FAMILIES[UNCLASSIFIED_INDEX]]
    return top, unclassified[:TOP_UNCLASSIFIED]


def _graph_kernels(state: RankState) -> int:
    """Kernels replayed from a CUDA/HIP graph: they share one graph launch's correlation id."""
    ev = state.trace.events
    launches = ev.correlation[graph_launches(ev, state.names)]
    kernels = ev.kind == Kind.KERNEL
    return int(np.isin(ev.correlation[kernels], launches).sum())
