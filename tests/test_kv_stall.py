"""KV-cache stalls and the capacity verdict on a tiny run directory built in code (exact µs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from analyzers.engine.driver import analyze_trace, settle_loaded
from analyzers.rank.kv_stall import stalled
from analyzers.rank.rank_stages import RankState, run_stages
from analyzers.read.loader import load
from analyzers.read.vllm_log import LogRecord
from tests.builders import annotation, cpu_op, write_trace
from tracekit.core import rundir
from tracekit.core.analysis import RankKv, from_json, to_json
from tracekit.core.buckets import BUCKETS
from tracekit.core.cpu_probe import RecordedPeaks
from tracekit.core.layout import Layout
from tracekit.core.rundir import StepRecord
from tracekit.render.verdict import evidence_lines

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
    peaks: RecordedPeaks | None = None,
    log: str | None = None,
    base_ns: int = 0,
    started_at: str | None = None,
) -> Path:
    """A run directory: manifest, one trace per rank (``traces``) or one rank, steps/, and
    ``log`` as logs/stdout.log."""
    run = root / "run"
    ranks = traces or [("dp0_pp0_tp0_rank0.pt.trace.json.gz", events, {"rank": 0})]
    for name, evs, _ in ranks:
        write_trace(run / rundir.TRACES / name, evs, base_ns=base_ns)
    (run / rundir.STEPS).mkdir(parents=True, exist_ok=True)
    lines = b"".join(msgspec.json.encode(r) + b"\n" for r in records)
    (run / rundir.STEPS / "engine-0.jsonl").write_bytes(lines)
    if log is not None:
        (run / rundir.LOGS).mkdir(parents=True, exist_ok=True)
        (run / rundir.LOGS / "stdout.log").write_text(log)
    manifest = rundir.Manifest(
        tracekit_version="0.1.0",
        status="complete",
        started_at=started_at,
        layout=Layout(**(layout or {})),
        model=model,
        kv_cache=kv_cache,
        hardware=hardware or {"cpu_model": "Test CPU"},
        peaks=peaks,
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
    # r1 and r3 of r1..r3: r0, the engine's first (cold) step, is left out of shares
    assert kv.stalled_share == 0.666667
    assert (kv.block_size, kv.usable_blocks) == (16, 10)
    assert kv.bytes_per_token == 2 * 2 * 2 * 64 * 2  # 2 · layers · kv heads · head dim · bf16
    assert kv.cache_bytes == 10 * 16 * 1024
    assert (kv.tokens_per_sequence, kv.ceiling, kv.ceiling_at_max_len) == (80.0, 2, 2)
    assert (kv.running_max, kv.running_waiting_mean, kv.preemptions) == (2, 2.0, 1)
    assert (kv.recompute_tokens, kv.stall_ns) == (4, 110 * US)
    regime = analysis.regime
    assert regime.name == "capacity-bound"
    assert regime.scores["capacity-bound"] == 3.333
    assert any("capacity ceiling ≈ 2 sequences" in e for e in evidence_lines(analysis))
    assert any("1 preemption(s) (steps/)" in e for e in evidence_lines(analysis))
    assert kv.binding_limit == "kv_blocks"
    # a CPU run: the KV cache is VLLM_CPU_KVCACHE_SPACE, not what the weights leave over
    assert any("VLLM_CPU_KVCACHE_SPACE" in a for a in regime.advice)
    assert not any("TP=2 halves the weights" in a for a in regime.advice)
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
    state = run_stages(RankState(trace.ranks[0], trace.names, facts=settle_loaded(trace).facts))
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


# Without steps/: vLLM's stats log lines (one sample per 1 s interval), on the traces' clock.
BASE = 1_795_336_260_000_000_000  # 2026-11-22T08:31:00Z in epoch ns: the trace's base time
SEC = 1_000_000 * US
LOG_LINE = (
    "(APIServer pid=7) INFO 11-22 08:31:{s:02d} [loggers.py:335] Engine 000: Avg prompt "
    "throughput: 0.0 tokens/s, Avg generation throughput: 99.0 tokens/s, Running: {r} reqs, "
    "Waiting: {w} reqs, CPU KV cache usage: {kv}%, Prefix cache hit rate: 0.0%"
)
LOG = "\n".join(
    [
        "(APIServer pid=7) INFO 11-22 08:30:57 [api_utils.py:286] non-default args: {}",
        LOG_LINE.format(s=1, r=4, w=2, kv="95.0"),  # [0.5, 1.5] s: full, waiting
        LOG_LINE.format(s=2, r=4, w=3, kv="97.5"),  # [1.5, 2.5] s: full, waiting
        LOG_LINE.format(s=3, r=4, w=0, kv="99.0"),  # [2.5, 3.5] s: full, nobody waits
        LOG_LINE.format(s=4, r=2, w=1, kv="50.0"),  # [3.5, 4.5] s: room for more
        "(APIServer pid=7) INFO 11-22 08:31:05 [launcher.py:279] [shutdown] API server",
    ]
)


def log_run(root: Path, records_: list[StepRecord] | None = None) -> Path:
    """One CPU rank busy 0.3 s of [1.0, 3.0] s after BASE; 40 usable blocks of 16 tokens."""
    events = [
        cpu_op(MM, 1_000_000, 100_000),
        cpu_op(MM, 2_000_000, 100_000),
        cpu_op(MM, 2_900_000, 100_000),
    ]
    return make_run(
        root,
        events,
        records_ or [],
        model=MODEL,
        kv_cache={"block_size": 16, "num_blocks": 41, "dtype": "auto"},
        log=LOG,
        base_ns=BASE,
        started_at="2026-11-22T08:30:55.000+00:00",
    )


def test_log_lines_stand_in_for_steps(tmp_path: Path) -> None:
    trace = load(log_run(tmp_path))
    facts = settle_loaded(trace).facts
    logged = [r for r in facts.records if isinstance(r, LogRecord)]
    assert len(logged) == len(facts.records)
    assert [(r.ts_ns - BASE, r.interval_ns, r.waiting) for r in logged] == [
        (SEC // 2, SEC, 2),
        (3 * SEC // 2, SEC, 3),
        (5 * SEC // 2, SEC, 0),
        (7 * SEC // 2, SEC, 1),
    ]
    analysis = analyze_trace(trace)
    rank = analysis.ranks[0]
    assert rank.window_ns == 2 * SEC
    # only [1.5, 2.5] s lies between two full-while-waiting samples: its idle time
    # (1 s less the op at 2.0 s) moves; the interval before it has no opening sample
    assert {k: v // US for k, v in rank.buckets.items() if v} == {
        "compute": 300_000,
        "kv_stall": 900_000,
        "idle": 800_000,
    }
    assert rank.kv == RankKv(waiting_ns=900_000 * US, recompute_ns=0, recompute_tokens=0)
    kv = analysis.kv
    assert kv is not None
    assert kv.stalled_share == 0.5  # two of four 1 s intervals
    # blocks per running sequence while ≥90% full: 9.5, 9.75, 9.9 → 9.7167 · 16 tokens
    assert (kv.tokens_per_sequence, kv.ceiling, kv.running_max) == (155.5, 4, 4)
    assert (kv.running_waiting_mean, kv.preemptions, kv.stall_ns) == (3.333, 0, 900_000 * US)
    assert kv.evidence[0].startswith("source: vLLM log lines: 4 periodic stats line(s)")
    assert "UTC offset +00:00" in kv.evidence[0] and "not per step" in kv.evidence[0]
    assert kv.evidence[1] == (
        "KV cache full (≥90% of blocks, or no room for one more sequence) while requests "
        "waited or were preempted: 2 of 4 logged interval(s), 50.0% of logged time "
        "(vLLM log lines)"
    )
    assert any(e.startswith("preemptions not measured (no count in") for e in kv.evidence)
    assert any("only between two consecutive full samples" in e for e in kv.evidence)
    regime = analysis.regime
    assert regime.name == "capacity-bound"
    assert regime.scores["capacity-bound"] == 2.5
    assert any(e.startswith("source: vLLM log lines") for e in evidence_lines(analysis))
    assert from_json(to_json(analysis)).kv == kv  # schema round trip


def test_steps_win_over_log_lines(tmp_path: Path) -> None:
    step = StepRecord(ts_ns=BASE + SEC, running=1, kv_usage=0.1)
    facts = settle_loaded(load(log_run(tmp_path, [step]))).facts
    assert facts.records == (step,)
    kv = analyze_trace(load(log_run(tmp_path / "b", [step]))).kv
    assert kv is not None and not any("vLLM log lines" in e for e in kv.evidence)
