"""``tracekit plan`` latency and explanations: TTFT / TPOT per layout, ``--slo``, the regime
label agreeing with the shares, the caption, and plans where nothing fits saying what would."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from analyzers.planning import presets, slo, suggest
from analyzers.planning.plan import plan
from tests.test_plan import cli
from tracekit.core import buckets as b
from tracekit.core.errors import TracekitError
from tracekit.core.hardware import spec_by_name
from tracekit.core.layout import Layout
from tracekit.core.plan_result import Plan, Slo
from tracekit.core.regime_table import CAPACITY, REGIME_RULES

H100, H200 = spec_by_name("H100"), spec_by_name("H200")
BY_BUCKET = {r.buckets[0]: r.name for r in REGIME_RULES}


def make(model: str, workload: str, gpu: str = "H100", gpus: int = 8) -> Plan:
    return plan(presets.model(model), spec_by_name(gpu), gpus, presets.workload(workload))


CASES = [
    ("Llama-3.1-8B", "chat", "H100"),
    ("Llama-3.1-8B", "reasoning", "H100"),
    ("Qwen2.5-32B", "chat", "H100"),
    ("Llama-3.1-405B-FP8", "chat", "H100"),
    ("DeepSeek-R1", "reasoning", "H200"),
]


@pytest.mark.parametrize(("model", "workload", "gpu"), CASES)
def test_regime_agrees_with_the_shares(model: str, workload: str, gpu: str) -> None:
    for r in make(model, workload, gpu).layouts:
        if not r.feasible:
            continue
        largest = max(r.shares, key=lambda k: r.shares[k])
        short = r.scores.get(CAPACITY.name, 0.0)
        if r.regime == CAPACITY.name:
            assert short >= CAPACITY.threshold
        else:
            assert short < CAPACITY.threshold and r.regime == BY_BUCKET[largest]
            assert r.scores[r.regime] == pytest.approx(r.shares[largest], abs=1e-3)
        assert r.tpot_ms == r.round_ms and r.ttft_ms > r.tpot_ms
        assert r.concurrency == r.batch * r.layout.dp


def test_405b_fp8_chat_label_is_its_largest_share() -> None:
    # the case: shares of compute 70% / collective 30% were once called
    # interconnect-bound; now the label is whichever share is largest
    best = make("Llama-3.1-405B-FP8", "chat").best
    assert best is not None and best.layout == Layout(1, 8, 1)
    assert best.regime == BY_BUCKET[max(best.shares, key=lambda k: best.shares[k])]


def test_slo_parse() -> None:
    assert slo.parse("ttft=2s,tpot=50ms") == Slo(2000.0, 50.0)
    assert slo.parse("tpot=0.05s") == Slo(None, 50.0)
    for bad in ("ttft=2", "tpot=-1ms", "ttft=1s,ttft=2s", "e2e=3s"):
        with pytest.raises(TracekitError, match="bad --slo"):
            slo.parse(bad)


def test_slo_picks_the_highest_concurrency_meeting_the_targets() -> None:
    spec, work, target = (
        presets.model("Llama-3.1-405B-FP8"),
        presets.workload("chat"),
        Slo(None, 50.0),
    )
    p = slo.plan_for(spec, H100, 8, work, target)
    assert p.best is not None and p.slo == target
    free = make("Llama-3.1-405B-FP8", "chat")
    assert free.best is not None and free.best.tpot_ms > 50  # without targets it misses them
    for r in p.layouts:
        if r.feasible:
            assert target.met(r.ttft_ms, r.tpot_ms)
            one_more = plan(spec, H100, 8, presets.Workload("chat", 1024, 512,
                            (r.batch + 1) * r.layout.dp)).layouts  # fmt: skip
            nxt = next(x for x in one_more if x.layout == r.layout)
            assert nxt.tpot_ms > 50 or nxt.batch == r.batch  # the highest that meets them
        else:
            assert "exceed" in r.reason or "misses TPOT ≤ 50 ms" in r.reason


def test_slo_none_met_says_so_and_exits_1() -> None:
    args = ["plan", "--model", "Llama-3.1-8B", "--gpu", "H100", "--gpus", "8", "--slo", "tpot=1ms"]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 1
    assert "nothing meets TPOT ≤ 1 ms" in result.output
    assert "misses TPOT ≤ 1 ms even at 1 sequence per replica" in result.output


def test_405b_bf16_on_8_h100_says_nothing_fits_and_what_would() -> None:
    args = ["plan", "--model", "Llama-3.1-405B", "--gpu", "H100", "--gpus", "8"]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 1, result.output
    assert "nothing fits: no layout of 8× H100 SXM" in result.output
    assert "would fit: FP8 weights (--dtype fp8): TP=8 fits" in result.output
    assert "would fit: 16 GPUs (--gpus 16): TP=8 PP=2 fits" in result.output
    assert " #  layout" not in result.output  # no empty table
    data = json.loads(CliRunner().invoke(cli(), [*args, "--json"]).output)
    assert data["best"] is None and len(data["suggestions"]) == 2


def test_a_shorter_context_is_suggested_when_the_kv_cache_is_the_limit() -> None:
    spec, work = presets.model("Qwen2.5-32B"), presets.workload("1024:32768")
    p = suggest.planned(spec, H100, 1, work)
    assert p.best is None
    short = next(s for s in p.suggestions if s.startswith("a shorter context"))
    out = int(short.split("--workload 1024:")[1].split(")")[0])
    assert 0 < out < 32768
    fits = plan(spec, H100, 1, presets.workload(f"1024:{out}"))
    assert fits.best is not None
    assert plan(spec, H100, 1, presets.workload(f"1024:{out + 1}")).best is None
    assert any(s.startswith("FP8 weights") for s in p.suggestions)
    assert any(s.startswith("an FP8 KV cache") for s in p.suggestions)


def test_caption_defines_round_regimes_and_columns() -> None:
    args = ["plan", "--model", "Llama-3.1-8B", "--gpu", "H100", "--gpus", "8", "--width", "400"]
    text = CliRunner().invoke(cli(), args).output
    for header in ("TTFT ms", "TPOT ms", "conc", "tok/s/dev", "round shares"):
        assert header in text
    for term in ("A round is one decode step", "TPOT = round ms", "capacity-bound where",
                 "max seqs:", "conc:", "TTFT:", b.COLLECTIVE[:4]):  # fmt: skip
        assert term in text
