"""The bundled real vLLM CPU capture (TP=2): all-reduce is collective time, steps are found."""

from __future__ import annotations

from click.testing import CliRunner

import tracekit
from tests.conftest import SAMPLE_TP2
from tracekit.cli import main


def test_tp2_sample_collectives_and_steps() -> None:
    analysis = tracekit.analyze(SAMPLE_TP2)
    assert analysis.device == "cpu"
    assert [(r.rank, r.identity.world_size) for r in analysis.ranks] == [(0, 2), (1, 2)]
    for rank in analysis.ranks:
        ops = {o.name: o for o in rank.top_ops}
        allreduce = ops["_C::shm_allreduce"]
        assert (allreduce.family, allreduce.bucket) == ("all_reduce", "collective")
        assert allreduce.count == 95  # 2 per layer × 2 layers + 1, for each of 19 steps
        assert ops["_C::shm_all_gather"].count == 19  # logits, once per step
        assert rank.buckets["collective"] > 0
        assert rank.unclassified == []
        kinds = [s.kind for s in rank.steps]
        assert len(kinds) == 20
        assert kinds.count("prefill") + kinds.count("mixed") >= 1
        assert kinds.count("decode") >= 10
    stats = {s.kind: s for s in analysis.step_stats}
    # one annotating rank: TP ranks repeat the same steps
    assert stats["all"].count == 20
    assert stats["all"].context_tokens == 408  # 6 prompts: 32+48+64+96+128+40


def test_report_shows_collectives_and_step_table() -> None:
    result = CliRunner().invoke(main, ["analyze", str(SAMPLE_TP2), "--width", "140"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "_C::shm_allreduce" in out
    assert "Engine steps" in out
    assert "name prior" in out  # the report says where compute vs HBM comes from
    assert "Regime" in out
