"""Roofline stage: compute vs HBM per op call from recorded shapes, else per engine step from
the model config and the step's tokens.

**Per op call** (where the trace was recorded with ``record_shapes=True``): each call tree's
outermost op that ``analyzers.planning.op_cost`` can cost (GEMMs, attention, elementwise) is set
against the ridge point by its own FLOPs / bytes, and its time — its span on a CPU rank, the
device work it launched on a GPU rank — goes to compute or hbm accordingly (``op_roofline``).
This takes precedence over the step model below, which decides the rest.

**Per step**: FLOPs and bytes come from the run manifest's model config and each step's
``execute_context_N(T)_generation_M(G)`` counts, for *this rank's shard* (TP divides heads,
FFN and vocab; PP gives the stage its layers as vLLM does; EP gives it E/ep whole experts).
Per step, with n = T + G new tokens:

* weights are read once per step: attention (q, k, v, o), the gated FFN (3 · hidden · I) or
  the experts the step's tokens touch (E_local · (1 − (1 − k/E)^n) of them, uniform routing),
  the router, and the LM head on the last stage;
* linear FLOPs = 2 · n · active parameters (k experts per token for MoE); LM head for the
  N + M sequences sampled;
* attention FLOPs: prefill 2 · heads · head_dim · T²/N per layer (causal, equal prompts);
  decode 4 · heads · head_dim · C per layer over the C context tokens the decodes read;
* KV bytes per token and layer = 2 · kv heads · head_dim · dtype bytes, written for the n new
  tokens and read over T + C; C from the capture's KV usage at that step (block-rounded),
  else from the prompt lengths seen;
* activations: the inputs and outputs of every matmul.

A step is compute-bound when FLOPs / bytes reaches the device's ridge point (peak FLOP/s /
peak bandwidth); its compute and HBM time (partition segments inside the step) all go to that
bucket. Unclassified ops and time outside modelled steps and costed ops keep the name prior.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from analyzers.planning.op_cost import SHAPES_SOURCE
from analyzers.planning.step_cost import StepCost, step_cost
from analyzers.rank.attribute import (
    BUCKET_INDEX,
    Attribution,
    relabel,
    segment_interval,
    split,
)
from analyzers.rank.classify import FAMILY_LEVEL, UNCLASSIFIED_INDEX
from analyzers.rank.costed_time import costed_ns
from analyzers.rank.graph_merge import GraphCalls
from analyzers.rank.op_bounds import CAPTURE_SOURCE, op_roofline, peak_errors
from analyzers.rank.step_annotations import StepRow
from analyzers.read.run_facts import RunFacts
from analyzers.read.vllm_log import LogRecord
from tracekit.core.analysis import (
    NAME_PRIOR,
    ROOFLINE,
    SHAPES,
    KindRoofline,
    RankRoofline,
    StepGroup,
)
from tracekit.core.buckets import COMPUTE, HBM
from tracekit.core.hardware import DeviceSpec
from tracekit.core.model_config import ModelConfig
from tracekit.core.rundir import StepRecord
from tracekit.core.trace_model import DEVICE_KINDS, Events, Kind, RankId

I64 = npt.NDArray[np.int64]
_C, _H = BUCKET_INDEX[COMPUTE], BUCKET_INDEX[HBM]


def step_windows(events: Events, steps: Sequence[StepRow], device: str) -> tuple[I64, I64]:
    """Each step's interval: its annotation on CPU ranks; on GPU ranks the span of the device
    work launched inside it (by correlation id), clipped so steps never overlap."""
    starts = np.array([s.start_ns for s in steps], dtype=np.int64)
    ends = starts + np.array([s.dur_ns for s in steps], dtype=np.int64)
    if device == "gpu" and len(steps):
        runtime = np.flatnonzero((events.kind == Kind.RUNTIME) & (events.correlation >= 0))
        dev = np.flatnonzero(np.isin(events.kind, DEVICE_KINDS) & (events.correlation >= 0))
        step_of = np.searchsorted(starts, events.start_ns[runtime], side="right") - 1
        inside = (step_of >= 0) & (events.start_ns[runtime] < ends[np.clip(step_of, 0, None)])
        corr, owner = events.correlation[runtime[inside]], step_of[inside]
        order = np.argsort(corr, kind="stable")
        corr, owner = corr[order], owner[order]
        if len(corr) and len(dev):
            at = np.clip(np.searchsorted(corr, events.correlation[dev]), 0, len(corr) - 1)
            hit = corr[at] == events.correlation[dev]
            step, rows = owner[at[hit]], dev[hit]
            lo = np.full(len(steps), np.iinfo(np.int64).max, dtype=np.int64)
            hi = np.full(len(steps), np.iinfo(np.int64).min, dtype=np.int64)
            np.minimum.at(lo, step, events.start_ns[rows])
            np.maximum.at(hi, step, events.end_ns[rows])
            seen = hi > np.iinfo(np.int64).min
            starts, ends = np.where(seen, lo, starts), np.where(seen, hi, ends)
    if len(starts) > 1:
        starts[1:] = np.maximum(starts[1:], np.maximum.accumulate(ends)[:-1])
        ends = np.maximum(ends, starts)
    return starts, ends


class DecodeContext:
    """C, the context tokens a step's decodes read: the scheduler's count in steps/
    (``decode_context``, captures of this tracekit), else vLLM's detailed step annotation
    (``sk`` of the generation phase) where there is no steps/, else from KV usage in steps/,
    else prompts (vLLM's logged stats are one sample per interval, too coarse for a step's
    context)."""

    def __init__(self, facts: RunFacts, engine: int, steps: Sequence[StepRow]) -> None:
        mine = [r for r in facts.records if r.engine == engine and not isinstance(r, LogRecord)]
        self.ts = [r.ts_ns for r in mine]
        self.records = mine
        self.capacity = (facts.usable_blocks or 0) * (facts.block_size or 0)
        prompts = [s.context_tokens / s.context_requests for s in steps if s.context_requests]
        self.prompt = float(np.mean(prompts)) if prompts else 0.0
        counted = any(r.decode_context for r in mine)
        self.annotated = not mine and any(s.generation_keys for s in steps)
        self.source = (
            "the scheduler's context counts in steps/"
            if counted
            else "the detailed step annotations' keys read (sk; no steps/)"
            if self.annotated
            else "KV usage in steps/"
            if mine and self.capacity
            else "prompt lengths seen (no steps/ KV usage)"
            if prompts
            else "not counted (no steps/ KV usage, no prefill seen)"
        )

    def __call__(self, step: StepRow) -> float:
        if not step.generation_requests:
            return 0.0
        record = self._record_of(step)
        if record is not None and record.decode_context:
            return float(record.decode_context)
        if self.annotated and step.generation_keys is not None:
            return float(step.generation_keys)
        if self.records and self.capacity:
            r = record or self.records[max(bisect_right(self.ts, step.start_ns) - 1, 0)]
            cached = max(0.0, r.kv_usage * self.capacity - step.context_tokens)
            # the step's decodes read their own contexts: a share of the cache when other
            # running requests sit out this step (PP micro-batches, budget limits)
            return cached * min(1.0, step.generation_requests / max(r.running, 1))
        return step.generation_requests * self.prompt

    def _record_of(self, step: StepRow) -> StepRecord | None:
        """The step record of this very step: the latest of the four before it whose
        prefill / decode tokens are the step's."""
        at = bisect_right(self.ts, step.start_ns) - 1
        for i in range(at, max(at - 4, -1), -1):
            r = self.records[i]
            if (r.prefill_tokens, r.decode_tokens) == (step.context_tokens, step.generation_tokens):
                return r
        return None


def roofline(
    att: Attribution,
    events: Events,
    steps: Sequence[StepRow],
    facts: RunFacts,
    identity: RankId,
    graph: GraphCalls | None = None,
) -> tuple[Attribution, RankRoofline | None]:
    """Compute vs HBM: inside modelled steps by each step's intensity (model config), then
    per op call by its own intensity where the trace recorded shapes or a capture trace gave
    the replayed kernels' ops (``graph``), which take precedence. ``costed_ns`` says which
    decided how much of the rank's busy time (``analyzers.rank.costed_time``)."""
    spec = facts.spec
    if spec is None:
        return att, None
    result = None
    if facts.model is not None:
        att, result = _step_roofline(att, events, steps, facts, identity, facts.model, spec)
    att, ops = op_roofline(att, events, spec, graph, steps)
    if ops is not None:
        if result is None or result.basis == NAME_PRIOR:
            base = result or RankRoofline(
                basis=SHAPES, device=spec.name, ridge=spec.ridge, kinds=[], decided_ns=0, notes=[]
            )
            result = msgspec.structs.replace(base, basis=SHAPES)
        result = msgspec.structs.replace(
            result,
            ops=ops.kinds,
            ops_decided_ns=ops.decided_ns,
            notes=[*result.notes, *ops.notes],
            layers_ns=ops.layers_ns,
        )
    elif graph is not None:  # replayed kernels nothing costed: say why
        result = result or RankRoofline(
            basis=NAME_PRIOR, device=spec.name, ridge=spec.ridge, kinds=[], decided_ns=0, notes=[]
        )
        result = msgspec.structs.replace(result, notes=[*result.notes, *graph.notes])
    if result is None:
        return att, None
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    spans = ops.spans if ops is not None else {}
    modelled = empty
    if result.basis == ROOFLINE:
        starts, ends = step_windows(events, steps, att.device)
        used = np.array([s.context_tokens + s.generation_tokens > 0 for s in steps], dtype=bool)
        modelled = (starts[used], ends[used]) if len(steps) else empty
    costed = costed_ns(
        att, spans.get(SHAPES_SOURCE, empty), spans.get(CAPTURE_SOURCE, empty), modelled
    )
    return att, msgspec.structs.replace(result, costed_ns=costed)


def _step_roofline(
    att: Attribution,
    events: Events,
    steps: Sequence[StepRow],
    facts: RunFacts,
    identity: RankId,
    m: ModelConfig,
    spec: DeviceSpec,
) -> tuple[Attribution, RankRoofline | None]:
    """Split compute vs HBM time inside modelled steps by each step's arithmetic intensity."""
    shard = facts.shard(identity)
    kv_b = facts.kv_bytes_per_token(shard) or 0
    context = DecodeContext(facts, identity.dp or 0, steps)
    modelled = [i for i, s in enumerate(steps) if s.context_tokens + s.generation_tokens > 0]
    notes = [f"decode context: {context.source}"]
    if not modelled:
        notes.append("no step with tokens in the trace: the name prior stands")
        return att, _result(spec, [], [], [], notes, 0, NAME_PRIOR)
    chosen = [steps[i] for i in modelled]
    costs = [step_cost(m, shard, s, context(s), kv_b) for s in chosen]
    bound = np.array([c.flops >= spec.ridge * c.bytes for c in costs])
    starts, ends = step_windows(events, steps, att.device)
    starts, ends = starts[modelled], ends[modelled]
    att = split(att, np.concatenate([starts, ends]))
    seg = segment_interval(att, starts, ends)
    winner = att.partition.winner
    family_ok = winner != FAMILY_LEVEL[UNCLASSIFIED_INDEX]
    eligible = (seg >= 0) & np.isin(att.segment_bucket, (_C, _H)) & family_ok
    target = np.where(bound, _C, _H).astype(np.int8)
    labels = att.segment_bucket.copy()
    labels[eligible] = target[seg[eligible]]
    decided = int(np.diff(att.partition.bounds)[eligible].sum())
    op_bucket = _op_buckets(att, events, starts, ends, target)
    att = relabel(att, labels, op_bucket)
    durations = (ends - starts).tolist()
    return att, _result(spec, chosen, costs, durations, notes, decided, ROOFLINE)


def _op_buckets(
    att: Attribution, events: Events, starts: I64, ends: I64, target: npt.NDArray[np.int8]
) -> npt.NDArray[np.int8]:
    """Ops inside a modelled step list under that step's bucket (named work only)."""
    out = att.op_bucket.copy()
    at = np.searchsorted(starts, events.start_ns, side="right") - 1
    inside = (at >= 0) & (events.start_ns < ends[np.clip(at, 0, None)])
    named = np.isin(out, (_C, _H)) & (att.op_family != UNCLASSIFIED_INDEX)
    rows = inside & named
    out[rows] = target[at[rows]]
    return out


def _result(
    spec: DeviceSpec,
    steps: Sequence[StepRow],
    costs: Sequence[StepCost],
    durations: Sequence[int],
    notes: list[str],
    decided: int,
    basis: str,
) -> RankRoofline:
    kinds = []
    groups: tuple[StepGroup, ...] = ("prefill", "decode", "mixed", "all")
    for kind in groups:
        rows = [i for i, s in enumerate(steps) if kind in ("all", s.kind)]
        if not rows or (kind == "all" and len({s.kind for s in steps}) == 1):
            continue
        kinds.append(_kind(kind, rows, costs, durations, spec))
    for k in kinds:
        if k.model_error:
            notes.append(f"{k.kind}: {k.model_error}")
    return RankRoofline(
        basis=basis,
        device=spec.name,
        ridge=spec.ridge,
        kinds=kinds,
        decided_ns=decided,
        notes=notes,
    )


def _kind(
    kind: StepGroup,
    rows: list[int],
    costs: Sequence[StepCost],
    durations: Sequence[int],
    spec: DeviceSpec,
) -> KindRoofline:
    flops = sum(costs[i].flops for i in rows)
    size = sum(costs[i].bytes for i in rows)
    time_ns = sum(durations[i] for i in rows)
    seconds = time_ns / 1e9
    f_pct = 100 * flops / seconds / spec.flops if seconds else None
    b_pct = 100 * size / seconds / spec.bandwidth if seconds else None
    errors = peak_errors(f_pct, b_pct)
    return KindRoofline(
        kind=kind,
        steps=len(rows),
        compute_steps=sum(1 for i in rows if costs[i].flops >= spec.ridge * costs[i].bytes),
        flops=flops,
        bytes=size,
        intensity=flops / size if size else 0.0,
        time_ns=time_ns,
        flops_pct=None if f_pct is None or f_pct > 100 else round(f_pct, 3),
        bandwidth_pct=None if b_pct is None or b_pct > 100 else round(b_pct, 3),
        model_error="; ".join(errors) or None,
    )
