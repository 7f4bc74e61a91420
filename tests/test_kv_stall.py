"""KV-cache stalls and the capacity verdict on a tiny run directory built in code (exact µs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from analyzers.kv_stall import stalled
from analyzers.loader import load
from analyzers.pipeline import RankState, analyze_trace, run_facts, run_stages
from tests.builders import annotation, cpu_op, write_trace
from tracekit import rundir
from tracekit.analysis import RankKv, from_json, to_json
from tracekit.buckets import BUCKETS
from tracekit.rundir import StepRecord

US = 1_000
MM, ATTN = "_C::onednn_mm", "_C::cpu_attention_with_kv_cache"
MODEL = {
    "architecture": "LlamaForCausalLM",
    "layers": 2,
    "hidden_size": 256,
    "heads": 4,
    "kv_heads": 2,
    "head_dim": 64,
    "intermediate_size": 512,
    "vocab_size": 2048,
    "dtype": "bfloat16",
    "max_model_len": 64,
}


@pytest.fixture(autouse=True)
def no_cpu_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No measured CPU peaks unless a test writes some: results never depend on ~/.cache."""
    monkeypatch.setenv("TRACEKIT_HW_CACHE", str(tmp_path / "no-hw.json"))


def make_run(
    root: Path,
    events: list[dict[str, Any]],
    records: list[StepRecord],
    *,
    model: dict[str, Any] | None = None,
    kv_cache: dict[str, Any] | None = None,
    layout: dict[str, int] | None = None,
    traces: list[tuple[str, list[dict[str, Any]], dict[str, int]]] | None = None,
    hardware: dict[str, Any] | None = None,
) -> Path:
    """A run directory: manifest, one trace per rank (``traces``) or one rank, steps/."""
    run = root / "run"
    ranks = traces or [("dp0_pp0_tp0_rank0.pt.trace.json.gz", events, {"rank": 0})]
    for name, evs, _ in ranks:
        write_trace(run / rundir.TRACES / name, evs, base_ns=0)
    (run / rundir.STEPS).mkdir(parents=True, exist_ok=True)
    lines = b"".join(msgspec.json.encode(r) + b"\n" for r in records)
    (run / rundir.STEPS / "engine-0.jsonl").write_bytes(lines)
    manifest = rundir.Manifest(
        tracekit_version="0.1.0",
        status="complete",
        layout=rundir.Layout(**(layout or {})),
        model=model,
        kv_cache=kv_cache,
        hardware=hardware or {"cpu_model": "Test CPU"},
        ranks=[rundir.RankEntry(file=n, **ident) for n, _, ident in ranks],
    )
    rundir.write_manifest(run, manifest)
    return run


def step_events() -> list[dict[str, Any]]:
    """Step A (2 decodes) and step B (2 resumed requests recomputing 4 tokens)."""
    return [
        annotation("execute_context_0(0)_generation_2(2)", 0, 100),
        cpu_op(MM, 10, 40),
        cpu_op(ATTN, 50, 20),
        annotation("execute_context_0(0)_generation_2(6)", 200, 100),
        cpu_op(MM, 200, 60),
        cpu_op(ATTN, 260, 30),
    ]


def records(preemptions: int = 1) -> list[StepRecord]:
    """kv usage over 10 usable blocks: r1 ≥ 90% full, r3 too full for one more sequence."""
    return [
        StepRecord(ts_ns=0, running=2, kv_usage=0.5, decode_tokens=2),
        StepRecord(ts_ns=150 * US, running=2, waiting=3, kv_usage=1.0, preemptions=preemptions),
        StepRecord(ts_ns=300 * US, running=2, waiting=1, kv_usage=0.6),
        StepRecord(ts_ns=450 * US, running=2, waiting=1, kv_usage=0.8),
    ]


KV_CACHE = {"block_size": 16, "num_blocks": 11, "dtype": "auto"}


def test_stalled_full_or_no_room_for_one_more_sequence() -> None:
    assert stalled(records(), 10).tolist() == [False, True, False, True]
    # without the block count only the ≥90% rule applies
    assert stalled(records(), None).tolist() == [False, True, False, False]


def test_kv_stall_buckets_exact(tmp_path: Path) -> None:
    run = make_run(tmp_path, step_events(), records(), model=MODEL, kv_cache=KV_CACHE)
    analysis = analyze_trace(load(run))
    rank = analysis.ranks[0]
    assert rank.window_ns == 280 * US  # first to last op
    assert {k: v // US for k, v in rank.buckets.items() if v} == {
        "compute": 40,  # step A's matmul
        "hbm": 50,  # attention in both steps
        "kv_stall": 110,  # step B's matmul (recompute: 4 of 6 tokens of 90 µs work = 60)
        "host": 30,  # + idle 150..200 inside the stalled record (50)
        "idle": 50,  # 100..150: before the cache filled
    }
    assert rank.kv == RankKv(waiting_ns=50 * US, recompute_ns=60 * US, recompute_tokens=4)
    assert rank.compute_hbm_basis == "name prior"  # no measured CPU peaks here


def test_capacity_report_and_verdict(tmp_path: Path) -> None:
    run = make_run(tmp_path, step_events(), records(), model=MODEL, kv_cache=KV_CACHE)
    analysis = analyze_trace(load(run))
    kv = analysis.kv
    assert kv is not None
    assert kv.stalled_share == 0.5  # r1 and r3 of four equal steps
    assert (kv.block_size, kv.usable_blocks) == (16, 10)
    assert kv.bytes_per_token == 2 * 2 * 2 * 64 * 2  # 2 · layers · kv heads · head dim · bf16
    assert kv.cache_bytes == 10 * 16 * 1024
    assert (kv.tokens_per_sequence, kv.ceiling, kv.ceiling_at_max_len) == (80.0, 2, 2)
    assert (kv.running_max, kv.running_waiting_mean, kv.preemptions) == (2, 2.0, 1)
    assert (kv.recompute_tokens, kv.stall_ns) == (4, 110 * US)
    regime = analysis.regime
    assert regime.name == "capacity-bound"
    assert regime.scores["capacity-bound"] == 2.5
    assert any("capacity ceiling ≈ 2 sequences" in e for e in regime.evidence)
    assert any("1 preemption(s) (steps/)" in e for e in regime.evidence)
    assert any("TP=2 halves the weights" in a for a in regime.advice)
    assert from_json(to_json(analysis)).kv == kv  # schema round trip


def test_recompute_needs_preemptions(tmp_path: Path) -> None:
    """Several tokens per decode request without any preemption is not recompute
    (speculative decoding does the same)."""
    run = make_run(tmp_path, step_events(), records(preemptions=0), kv_cache=KV_CACHE)
    rank = analyze_trace(load(run)).ranks[0]
    assert rank.kv == RankKv(waiting_ns=50 * US, recompute_ns=0, recompute_tokens=0)
    assert rank.buckets["compute"] == 100 * US


def test_segments_and_buckets_agree(tmp_path: Path) -> None:
    """Every stage keeps the partition exact; segment labels sum to the buckets."""
    run = make_run(tmp_path, step_events(), records(), kv_cache=KV_CACHE)
    trace = load(run)
    state = run_stages(RankState(trace.ranks[0], trace.names, facts=run_facts(trace)))
    att = state.attribution
    assert att is not None
    lengths = np.diff(att.partition.bounds)
    for i, bucket in enumerate(BUCKETS):
        assert int(lengths[att.segment_bucket == i].sum()) == att.buckets[bucket]


def test_without_steps_nothing_moves(tmp_path: Path) -> None:
    run = make_run(tmp_path, step_events(), [], kv_cache=KV_CACHE)
    analysis = analyze_trace(load(run))
    assert analysis.kv is None
    assert analysis.ranks[0].buckets["kv_stall"] == 0
    assert "capacity-bound" in analysis.regime.not_assessed
