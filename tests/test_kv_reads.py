"""KV bytes decode attention reads per step, from the scheduler's context counts (steps/)."""

from __future__ import annotations

import pytest

from analyzers.read.run_facts import RunFacts
from analyzers.run.kv_reads import kv_reads
from tracekit.core.layout import Layout
from tracekit.core.model_config import ModelConfig
from tracekit.core.rundir import StepRecord

#: 4 layers, 8 KV heads of 64 under TP=2, bf16: 2 · 4 · 4 · 64 · 2 = 4096 bytes per token and rank
MODEL = ModelConfig(
    layers=4, hidden=512, heads=8, kv_heads=8, head_dim=64, intermediate=1024, vocab=1000,
    dtype_bytes=2,
)  # fmt: skip
PER_TOKEN = 4096
MS = 1_000_000


def _decode_run(batch: int, prompt: int, steps: int, step_ms: int) -> list[StepRecord]:
    """One prefill step, then ``steps`` decode steps of ``batch`` requests, ``step_ms`` each;
    decode step k attends over prompt + k tokens per request."""
    out = [StepRecord(ts_ns=0, running=batch, prefill_tokens=batch * prompt)]
    out += [
        StepRecord(
            ts_ns=(k + 1) * step_ms * MS,
            running=batch,
            decode_tokens=batch,
            decode_context=batch * (prompt + k + 1),
        )
        for k in range(steps)
    ]
    return out


def test_bytes_and_bandwidth_are_counted_per_step() -> None:
    records = _decode_run(batch=4, prompt=100, steps=8, step_ms=10)
    facts = RunFacts(model=MODEL, layout=Layout(tp=2), records=tuple(records))
    got = kv_reads(facts)
    assert got is not None and got.bytes_per_token == PER_TOKEN
    # the prefill step has no decode context; every decode step's
    # time is until the next record (the last: the median gap)
    counted = [r for r in records if r.decode_context]
    assert got.steps == len(counted)
    assert got.bytes_read == sum(r.decode_context for r in counted) * PER_TOKEN
    assert got.bandwidth == pytest.approx(got.bytes_read / (len(counted) * 10e-3))
    # grows with context: one bin per two steps, context 101.5, 103.5, ... per request
    per_request = [b.context_per_request for b in got.by_context]
    assert per_request == [101.5, 103.5, 105.5, 107.5]
    assert [b.bytes_per_step for b in got.by_context] == [4 * c * PER_TOKEN for c in per_request]


def test_no_context_counts_no_figure() -> None:
    """Older captures (and vLLM's logged stats) have no decode_context: nothing is guessed."""
    records = [StepRecord(ts_ns=k * MS, decode_tokens=4) for k in range(5)]
    assert kv_reads(RunFacts(model=MODEL, records=tuple(records))) is None
    with_context = _decode_run(batch=2, prompt=10, steps=3, step_ms=5)
    assert kv_reads(RunFacts(records=tuple(with_context))) is None  # no model: no bytes
