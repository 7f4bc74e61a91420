"""KV-cache stalls and the capacity ceiling (the paper's capacity trap), from ``steps/``.

Per rank, two kinds of time move into the ``kv_stall`` bucket (segments are relabelled, so the
partition stays exact):

* **waiting**: host and idle time inside engine steps whose KV cache is *full* while requests
  wait or were just preempted: the engine runs a batch the cache caps, and the rest of the
  time is not work (a step lasts until the engine's next step; the last one the median gap).
  Full means at least ``KV_FULL`` of the blocks in use, or fewer free blocks than one running
  sequence holds on average (a small cache cannot admit one more sequence of that size).
  A step whose running batch is at ``max_num_seqs`` (when the run records it) is not a KV
  stall whatever the cache: the scheduler's limit, not the KV blocks, holds the queue;
* **recompute**: vLLM recomputes a preempted request from scratch when it resumes, and counts
  a resumed request (it has output tokens) as a *generation* request scheduling many tokens.
  A step annotated ``generation_M(G)`` with G > M recomputes G − M tokens; that token share
  of the step's work (compute, HBM and routing segments, from the step's start) is
  recompute. Counted only when ``steps/`` shows preemptions (speculative decoding also
  schedules several tokens per request).

The run-level report sets the capacity ceiling, the sequences the cache holds at the context
the running sequences had while it was full (block-rounded, from KV usage), against the
running batch and ``max_num_seqs``, and names the limit that held waiting requests
(``analyzers.read.run_config.binding_limit``). Its shares and means leave out each engine's cold
first step and long gaps (``analyzers.run.step_flags``).

Without ``steps/`` the records are vLLM's own periodic stats log lines
(``analyzers.read.vllm_log``): one sample of running / waiting / KV usage per engine and logging
interval (~10 s by default), not per step. Each sample stands for its interval in the report's
shares and ceiling. Trace time moves to ``kv_stall`` only between two consecutive samples that
both show the cache full while requests wait (what happened inside one interval is not known);
the evidence names the source, the interval and how the lines were put on the traces' clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from analyzers.rank.attribute import BUCKET_INDEX, Attribution, relabel, segment_interval, split
from analyzers.rank.roofline_stage import step_windows
from analyzers.rank.step_annotations import StepRow
from analyzers.read.run_config import Limits, binding_limit, capped_by_seqs
from analyzers.read.run_facts import RunFacts
from analyzers.read.vllm_log import SOURCE as LOG_SOURCE
from analyzers.read.vllm_log import LogRecord
from analyzers.run.engine_timeline import step_durations
from analyzers.run.step_flags import flag_steps
from tracekit.core.analysis import KvReport, RankKv, RankResult
from tracekit.core.buckets import COMPUTE, HBM, HOST, IDLE, KV_STALL, MOE_ROUTING
from tracekit.core.regime_table import KV_FULL, OUTLIER_FACTOR
from tracekit.core.rundir import StepRecord
from tracekit.core.trace_model import Events, RankId

I64 = npt.NDArray[np.int64]
_WORK = tuple(BUCKET_INDEX[b] for b in (COMPUTE, HBM, MOE_ROUTING))
_SPARE = (BUCKET_INDEX[HOST], BUCKET_INDEX[IDLE])
_KV = BUCKET_INDEX[KV_STALL]


def stalled(
    records: Sequence[StepRecord], usable_blocks: int | None, max_num_seqs: int | None = None
) -> npt.NDArray[np.bool_]:
    """Per record: the KV cache is full (module docstring) while requests wait or were
    preempted, and the running batch is below max_num_seqs (where known)."""
    kv = np.array([r.kv_usage for r in records], dtype=np.float64)
    running = np.array([r.running for r in records], dtype=np.float64)
    queued = np.array([r.waiting > 0 or r.preemptions > 0 for r in records], dtype=bool)
    full = kv >= KV_FULL
    if usable_blocks:
        used = kv * usable_blocks
        per_seq = np.divide(used, running, out=np.zeros_like(used), where=running > 0)
        full |= (running > 0) & (usable_blocks - used < per_seq - 1e-9)
    out: npt.NDArray[np.bool_] = full & queued & ~capped_by_seqs(records, max_num_seqs)
    return out


def coarse(records: Sequence[StepRecord]) -> bool:
    """The records are vLLM's logged stats (one sample per interval), not ``steps/``."""
    return bool(records) and isinstance(records[0], LogRecord)


def source(records: Sequence[StepRecord]) -> str:
    return LOG_SOURCE if coarse(records) else "steps/"


def durations(records: Sequence[StepRecord]) -> I64:
    """Per record: a step lasts until its engine's next step; a log line its interval."""
    if coarse(records):
        return np.array(
            [r.interval_ns if isinstance(r, LogRecord) else 0 for r in records], dtype=np.int64
        )
    out: I64 = step_durations(records).astype(np.int64)
    return out


def stall_intervals(
    records: Sequence[StepRecord],
    engine: int,
    usable_blocks: int | None,
    max_num_seqs: int | None = None,
) -> tuple[I64, I64]:
    """Merged, sorted intervals of one engine's stalled steps (log lines: module docstring)."""
    dur = durations(records)
    hit = stalled(records, usable_blocks, max_num_seqs)
    if coarse(records):
        hit = hit & _bracketed(records, hit)
    spans: list[list[int]] = []
    order = sorted(range(len(records)), key=lambda i: records[i].ts_ns)
    for i in order:
        r, d = records[i], int(dur[i])
        if r.engine != engine or not hit[i] or d <= 0:
            continue
        if spans and r.ts_ns <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], r.ts_ns + d)
        else:
            spans.append([r.ts_ns, r.ts_ns + d])
    arr = np.array(spans, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _bracketed(records: Sequence[StepRecord], hit: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Per log record: the sample that opens its interval (its engine's previous line, logged
    where this interval starts) is stalled too."""
    out = np.zeros(len(records), dtype=bool)
    last: dict[int, int] = {}
    for i in sorted(range(len(records)), key=lambda i: records[i].ts_ns):
        r = records[i]
        j = last.get(r.engine)
        prev = records[j] if j is not None else None
        if isinstance(prev, LogRecord) and hit[j] and prev.logged_ns == r.ts_ns:
            out[i] = True
        last[r.engine] = i
    return out


def recompute_tokens(step: StepRow) -> int:
    return max(0, step.generation_tokens - step.generation_requests)


def kv_stall(
    att: Attribution,
    events: Events,
    steps: Sequence[StepRow],
    facts: RunFacts,
    identity: RankId,
) -> tuple[Attribution, RankKv | None]:
    if not facts.records:
        return att, None
    preempted = any(r.preemptions for r in facts.records)
    redo = [i for i, s in enumerate(steps) if preempted and recompute_tokens(s)]
    recompute_ns = 0
    if redo:
        att, recompute_ns = _recompute(att, events, steps, redo)
    starts, ends = stall_intervals(
        facts.records, identity.dp or 0, facts.usable_blocks, facts.limits.max_num_seqs
    )
    att = split(att, np.concatenate([starts, ends]))
    seg = segment_interval(att, starts, ends)
    labels = att.segment_bucket.copy()
    move = (seg >= 0) & np.isin(labels, _SPARE)
    labels[move] = _KV
    waiting_ns = int(np.diff(att.partition.bounds)[move].sum())
    att = relabel(att, labels, None)
    tokens = sum(recompute_tokens(steps[i]) for i in redo)
    return att, RankKv(waiting_ns, recompute_ns, tokens)


def _recompute(
    att: Attribution, events: Events, steps: Sequence[StepRow], redo: list[int]
) -> tuple[Attribution, int]:
    """Relabel each recomputing step's token share of work, taken from the step's start."""
    starts, ends = step_windows(events, steps, att.device)
    starts, ends = starts[redo], ends[redo]
    att = split(att, np.concatenate([starts, ends]))
    seg = segment_interval(att, starts, ends)
    lengths = np.diff(att.partition.bounds)
    work = (seg >= 0) & np.isin(att.segment_bucket, _WORK)
    cuts = []
    for j, i in enumerate(redo):
        s = steps[i]
        rows = np.flatnonzero(work & (seg == j))
        total = int(lengths[rows].sum())
        want = total * recompute_tokens(s) // (s.context_tokens + s.generation_tokens)
        if not want:
            cuts.append(int(starts[j]))
            continue
        cum = np.cumsum(lengths[rows])
        k = int(np.searchsorted(cum, want))
        cuts.append(int(att.partition.bounds[rows[k] + 1] - (cum[k] - want)))
    cut = np.array(cuts, dtype=np.int64)
    att = split(att, cut)
    seg = segment_interval(att, starts, cut)
    move = (seg >= 0) & np.isin(att.segment_bucket, _WORK)
    labels = att.segment_bucket.copy()
    labels[move] = _KV
    moved = int(np.diff(att.partition.bounds)[move].sum())
    return relabel(att, labels, None), moved


def kv_report(facts: RunFacts, ranks: Sequence[RankResult]) -> KvReport | None:
    """The run's capacity figures against its running batch; None without step records
    (``steps/``, else vLLM's logged stats)."""
    records = facts.records
    if not records:
        return None
    src, logged = source(records), coarse(records)
    whole = durations(records)
    flagged, _ = flag_steps(records, whole)
    keep = ~flagged
    dur = np.where(flagged, 0, whole).astype(np.float64)  # flagged steps weigh nothing
    running = np.array([r.running for r in records], dtype=np.float64)
    waiting = (np.array([r.waiting for r in records]) > 0) & keep
    kv = np.array([r.kv_usage for r in records], dtype=np.float64)
    usable, block, limits = facts.usable_blocks, facts.block_size, facts.limits
    hit = stalled(records, usable, limits.max_num_seqs) & keep
    total = float(dur.sum())
    share = float(dur[hit].sum() / total) if total else float(hit[keep].mean())
    step_share = dur / total if total else keep / max(int(keep.sum()), 1)
    binds, held = binding_limit(records, step_share, hit, limits)
    evidence: list[str] = []
    if logged and isinstance(records[0], LogRecord):
        evidence.append(f"source: {records[0].basis}")
    unit = "logged interval(s)" if logged else "step(s)"
    evidence.append(
        f"KV cache full (≥{KV_FULL:.0%} of blocks, or no room for one more sequence) while "
        f"requests waited or were preempted: {int(hit.sum())} of {int(keep.sum())} {unit}, "
        f"{share:.1%} of {'logged' if logged else 'engine step'} time ({src})"
        + (
            f"; {int(flagged.sum())} step(s) left out (each engine's first, cold step and "
            f"gaps > {OUTLIER_FACTOR:g}× the median step)"
            if flagged.any()
            else ""
        )
    )
    per_seq = ceiling = at_max = cache_bytes = None
    shard = facts.shard(RankId(pp=0))
    per_token = facts.kv_bytes_per_token(shard)
    if usable and block:
        pick = (running > 0) & (kv >= KV_FULL) & keep
        basis = "while full"
        if not pick.any():
            pick, basis = (running > 0) & keep, "over the run"
        if pick.any():
            blocks = kv[pick] * usable / running[pick]
            weights = dur[pick] if dur[pick].sum() else None
            mean_blocks = float(np.average(blocks, weights=weights))
            per_seq = round(mean_blocks * block, 1)
            ceiling = int(usable // max(mean_blocks, 1e-9))
        m = facts.model
        if m and m.max_model_len:
            at_max = usable // math.ceil(m.max_model_len / block)
        cache_bytes = usable * block * per_token if per_token else None
        size = (
            f", {per_token / 1024:.1f} KiB/token = {cache_bytes / 2**20:.1f} MiB per rank "
            "(model config: 2 · layers · KV heads · head dim · dtype)"
            if per_token and cache_bytes
            else ""
        )
        evidence.append(
            f"KV cache: {usable} usable blocks × {block} tokens = {usable * block} tokens "
            f"per replica{size} (manifest kv_cache)"
        )
        if ceiling is not None:
            evidence.append(
                f"capacity ceiling ≈ {ceiling} sequences at the observed ~{per_seq:.0f} "
                f"tokens per running sequence {basis} ({src} KV usage, block-rounded)"
                + (f"; {at_max} at max_model_len {m.max_model_len}" if at_max and m else "")
            )
    run_wait = (
        float(np.average(running[waiting], weights=dur[waiting]))
        if waiting.any() and dur[waiting].sum()
        else None
    )
    evidence.append(
        f"running batch: peak {int(running.max())}"
        + (f", mean {run_wait:.1f} while requests waited" if run_wait is not None else "")
        + f" ({src})"
    )
    evidence += _limit_lines(limits, binds, held, ceiling)
    chosen: dict[int | None, RankResult] = {}
    for r in ranks:
        if r.kv is not None:
            chosen.setdefault(r.identity.dp, r)
    redo = sum(r.kv.recompute_tokens for r in chosen.values() if r.kv)
    preemptions = sum(r.preemptions for r in records)
    counted = f"{preemptions} preemption(s) ({src})"
    if logged and not any(isinstance(r, LogRecord) and r.preemptions_logged for r in records):
        counted = "preemptions not measured (no count in the log lines)"
    evidence.append(
        f"{counted}; {redo} token(s) recomputed in the traced steps (generation tokens "
        "beyond one per request)"
    )
    window = sum(r.window_ns for r in ranks)
    stall = sum(r.buckets[KV_STALL] for r in ranks)
    waited = sum(r.kv.waiting_ns for r in ranks if r.kv)
    redone = sum(r.kv.recompute_ns for r in ranks if r.kv)
    if stall:
        evidence.append(
            f"kv_stall: {stall / window:.1%} of the analysed time: host/idle while the "
            f"cache was full and requests waited {waited / 1e6:.2f} ms"
            + (" (only between two consecutive full samples)" if logged else "")
            + f", recompute "
            f"{redone / 1e6:.2f} ms (trace + {src})"
        )
    return KvReport(
        stalled_share=round(share, 6),
        block_size=block,
        usable_blocks=usable,
        bytes_per_token=per_token,
        cache_bytes=cache_bytes,
        tokens_per_sequence=per_seq,
        ceiling=ceiling,
        ceiling_at_max_len=at_max,
        running_max=int(running.max()),
        running_waiting_mean=None if run_wait is None else round(run_wait, 3),
        preemptions=preemptions,
        recompute_tokens=redo,
        stall_ns=stall,
        stall_share=stall / window if window else 0.0,
        evidence=evidence,
        max_num_seqs=limits.max_num_seqs,
        max_num_batched_tokens=limits.max_num_batched_tokens,
        limits_source=limits.source,
        binding_limit=binds,
        seqs_capped_share=round(held.get("max_num_seqs", 0.0), 6),
    )


_BINDS = {
    "max_num_seqs": "the running batch was at max_num_seqs: the scheduler's limit, not the KV "
    "cache, held the queue (not capacity-bound)",
    "kv_blocks": "the KV cache was full: the cache held the queue",
    "max_num_batched_tokens": "the step used its whole token budget (max_num_batched_tokens): "
    "prefill chunking held the queue",
    "unknown": "none of max_num_seqs, the KV cache or the token budget was at its limit "
    "(or the limits were not recorded)",
}


def _limit_lines(
    limits: Limits, binds: str | None, held: dict[str, float], ceiling: int | None
) -> list[str]:
    """Which limit binds: the scheduler's (max_num_seqs, token budget) or the KV cache's."""
    if limits.source is None:
        told = "max_num_seqs / max_num_batched_tokens not recorded"
    else:
        told = (
            f"max_num_seqs {limits.max_num_seqs or 'not recorded'}, max_num_batched_tokens "
            f"{limits.max_num_batched_tokens or 'not recorded'} ({limits.source})"
        )
        if limits.max_num_seqs and ceiling is not None and limits.max_num_seqs < ceiling:
            told += f"; max_num_seqs caps the batch below the KV ceiling of {ceiling}"
    out = [f"scheduler limits: {told}"]
    if binds is not None:
        parts = ", ".join(f"{k} {v:.1%}" for k, v in held.items() if v)
        out.append(
            f"binding limit while requests waited: {binds}: {_BINDS[binds]} "
            f"(share of step time: {parts or 'none'})"
        )
    return out
