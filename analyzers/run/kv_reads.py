"""KV-cache bytes read per engine step, from the scheduler's own context counts.

Each step record of a capture carries ``decode_context``: the tokens the step's decodes attend
over (tokens already computed plus the one scheduled, summed over the decoding requests, from
vLLM's scheduler output). Decode attention reads every one of them from the KV cache, so a
step reads ``decode_context × KV bytes per token`` per rank: a count, not an estimate. Over
the run this gives the KV read bandwidth, and by context length how it grows, the quantity
that defines a long reasoning decode.
"""

from __future__ import annotations

import numpy as np

from analyzers.read.run_facts import RunFacts
from analyzers.run.engine_timeline import step_durations
from analyzers.run.step_flags import flag_steps
from tracekit.core.kv_reads import KvReadBin, KvReads
from tracekit.core.rundir import StepRecord
from tracekit.core.trace_model import RankId

#: context bins over the decode steps, by context per decoding request
BINS = 4


def kv_reads(facts: RunFacts) -> KvReads | None:
    """KV bytes read by decode attention per step and per second, per rank; None where the
    step records carry no decode context (older captures, vLLM's logged stats)."""
    records = [r for r in facts.records if isinstance(r, StepRecord)]
    per_token = facts.kv_bytes_per_token(facts.shard(RankId(pp=0)))
    if not records or not per_token or not any(r.decode_context for r in records):
        return None
    whole = step_durations(records)
    flagged, _ = flag_steps(records, whole.astype(np.int64))
    rows = [
        i for i, r in enumerate(records) if r.decode_context and r.decode_tokens and not flagged[i]
    ]
    if not rows:
        return None
    context = np.array([records[i].decode_context for i in rows], dtype=np.float64)
    decodes = np.array([records[i].decode_tokens for i in rows], dtype=np.float64)
    seconds = whole[rows].astype(np.float64) / 1e9
    read = context * per_token
    order = np.argsort(context / decodes, kind="stable")
    bins = [
        KvReadBin(
            context_per_request=float(np.mean(context[part] / decodes[part])),
            bytes_per_step=float(np.mean(read[part])),
            bandwidth=float(read[part].sum() / seconds[part].sum()) if seconds[part].sum() else 0,
            steps=len(part),
        )
        for part in np.array_split(order, min(BINS, len(order)))
        if len(part)
    ]
    total = float(seconds.sum())
    return KvReads(
        steps=len(rows),
        bytes_per_token=int(per_token),
        bytes_read=int(read.sum()),
        bandwidth=float(read.sum() / total) if total else 0.0,
        by_context=bins,
    )
