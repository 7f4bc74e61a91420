"""The steady window: warm-up, ramp and drain left out, exactly, on step sequences and tiny
traces built here; the whole window one option away."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from click.testing import CliRunner

import tracekit
from analyzers.engine.driver import analyze
from analyzers.run.steady_state import (
    NO_STEPS,
    EngineSteps,
    StepSpan,
    choose,
    record_spans,
    steady_window,
)
from tests.builders import annotation, cpu_op, write_trace
from tracekit.cli import main
from tracekit.core.analysis import from_json, to_json
from tracekit.core.rundir import StepRecord
from tracekit.render.console import render

MS = 1_000_000
US = 1_000

#: (batch, prefill tokens, decode tokens, step ms): a warm-up (the first prompts, then a slow
#: step), a ramp as requests arrive, a plateau of 20 steps at batch 8 (with one slow and one
#: mixed step inside it, which stay), and a drain as requests finish
PHASES = (
    [(2, 64, 0, 30), (2, 0, 2, 25)]  # warm-up: steps 0–1
    + [(3, 0, 3, 10), (4, 16, 3, 10), (5, 0, 5, 10), (6, 0, 6, 10)]  # ramp: steps 2–5
    + [(8, 0, 8, 10)] * 9  # plateau: steps 6–25
    + [(8, 0, 8, 30), (8, 16, 7, 11)]
    + [(8, 0, 8, 10)] * 9
    + [(6, 0, 6, 10), (4, 0, 4, 10), (2, 0, 2, 10), (1, 0, 1, 10)]  # drain: steps 26–29
)
REASON = (
    "steps 6–25 of 30 run at batch ≥ 7 (80% of the plateau's 8), median step 10.00 ms; left "
    "out: warm-up: steps 0–1 (1 prefill-heavy (prefill over 50% of its tokens), 2 slow (over "
    "2× the plateau's median step, up to 30.0 ms)); ramp: steps 2–5 (batch 3 → 6, before the "
    "plateau); drain: steps 26–29 (batch 6 → 1)"
)


def spans(phases: list[tuple[int, int, int, int]], gap_ns: int = 0) -> tuple[StepSpan, ...]:
    out, t = [], 0
    for batch, pre, dec, ms in phases:
        out.append(StepSpan(t, t + ms * MS, batch, pre, dec))
        t += ms * MS + gap_ns
    return tuple(out)


def test_warmup_ramp_plateau_drain_exact() -> None:
    got = choose(EngineSteps(0, "test", spans(PHASES)))
    assert (got.first, got.last, got.steps) == (6, 25, 30)
    assert (got.warmup, got.ramp, got.drain) == (2, 4, 4)
    assert (got.plateau_batch, got.median_step_ns) == (8, 10 * MS)
    assert got.reason == REASON


def test_too_few_steps_and_no_plateau_keep_the_whole_window() -> None:
    few = choose(EngineSteps(0, "test", spans([(4, 0, 4, 10)] * 7)))
    assert few.first is None
    assert few.reason == (
        "7 engine step(s) in the window, fewer than 8: too few to tell warm-up from a steady state"
    )
    # a batch that only rises: the top quarter is no plateau of 8 steps
    rising = choose(EngineSteps(0, "test", spans([(b, 0, b, 10) for b in range(1, 17)])))
    assert rising.first is None
    assert rising.reason == (
        "only 7 of 16 steps run at batch ≥ 10 (80% of the plateau's 12) after warm-up and "
        "ramp, fewer than 8: no steady plateau"
    )
    # decodes only below the plateau: the full batch only ever prefills
    chunked = choose(EngineSteps(0, "test", spans([(1, 0, 1, 10)] * 4 + [(8, 64, 1, 10)] * 8)))
    assert chunked.first is None
    assert chunked.reason == (
        "every step at the plateau batch (8) is prefill-heavy (prefill over 50% of its tokens): "
        "no steady plateau"
    )


def test_steady_already_and_prefill_only() -> None:
    flat = choose(EngineSteps(0, "test", spans([(6, 0, 6, 10)] * 12)))
    assert (flat.first, flat.last, flat.warmup, flat.ramp, flat.drain) == (0, 11, 0, 0, 0)
    # every step prefills (no decode at all): prefills are the steady state, not warm-up
    prefill = choose(EngineSteps(0, "test", spans([(4, 64, 0, 10)] * 10 + [(0, 0, 0, 1)])))
    assert (prefill.first, prefill.last, prefill.warmup, prefill.drain) == (0, 9, 0, 1)
    flat_steps = EngineSteps(0, "t", spans([(6, 0, 6, 10)] * 12))
    window, state = steady_window([flat_steps], (0, 120 * MS), "steady", 1)
    assert (
        window == (0, 120 * MS)
        and state.analysed == "whole"
        and state.reason.startswith(
            "the whole window is analysed, already steady: steps 0–11 of 12"
        )
    )


def test_pipeline_batches_taking_turns_are_one_plateau() -> None:
    # PP=2: steps take turns between two batches in flight (4 and 2 requests)
    turns = spans([(2, 0, 2, 4)] + [(4, 0, 4, 4), (2, 0, 2, 4)] * 6)
    piped = choose(EngineSteps(0, "t", turns, interleave=2))
    assert (piped.first, piped.last, piped.warmup, piped.ramp, piped.drain) == (0, 12, 0, 0, 0)
    # read as one batch, the first and the last step of 2 would be a ramp and a drain
    flat = choose(EngineSteps(0, "t", turns, interleave=1))
    assert (flat.first, flat.last, flat.ramp, flat.drain) == (1, 11, 1, 1)


def test_engines_disagree_the_run_takes_their_overlap() -> None:
    a = spans(PHASES)  # steady 95–316 ms (steps 6–25)
    late = spans([(1, 0, 1, 10)] * 10 + [(8, 0, 8, 10)] * 20)  # steady 100–300 ms
    window, state = steady_window(
        [EngineSteps(0, "dp0", a), EngineSteps(1, "dp1", late)], (0, a[-1].end_ns), "steady", 4
    )
    assert window == (100 * MS, 300 * MS)
    first, second = state.engines
    assert (first.first, first.last) == (6, 24)  # the steps that overlap 100–300 ms
    assert first.reason.endswith("(narrowed to steps 6–24, where every engine is steady)")
    assert (second.first, second.last) == (10, 29)
    assert state.analysed == "steady" and (state.steps, state.whole_steps) == (19 + 20, 60)
    assert state.reason.startswith("the steady window (200.0 ms of the whole window's 356.0 ms")


def test_records_as_steps_and_no_steps() -> None:
    recs = [StepRecord(ts_ns=t, running=b, decode_tokens=b) for t, b in ((5, 1), (10, 2), (30, 2))]
    (eng,) = record_spans(recs, (0, 40))
    assert eng.spans == (
        StepSpan(5, 10, 1, 0, 1),
        StepSpan(10, 30, 2, 0, 2),
        StepSpan(30, 40, 2, 0, 2),
    )
    assert record_spans(recs, (0, 9))[0].spans == (StepSpan(5, 10, 1, 0, 1),)
    window, state = steady_window([], (3, 9), "steady", 1)
    assert window == (3, 9) and state.analysed == "whole" and state.reason == NO_STEPS


def _trace(path: Path, phases: list[tuple[int, int, int, int]], rank: int | None = None) -> Path:
    """A CPU rank: each step an annotation with one op inside it, 1 µs apart."""
    events, t = [], 0.0
    for batch, pre, dec, ms in phases:
        prompts = 1 if pre else 0
        name = f"execute_context_{prompts}({pre})_generation_{batch - prompts}({dec})"
        events += [annotation(name, t, ms * 1000), cpu_op("aten::mm", t + 1, ms * 1000 - 2)]
        t += ms * 1000 + 1
    return write_trace(path, events, rank=rank, world=2, base_ns=1_000_000_000)


def test_analyze_steady_by_default_whole_one_option_away(tmp_path: Path) -> None:
    path = _trace(tmp_path / "t.json.gz", PHASES)
    steady = analyze(path, jobs=1)
    s = steady.steady
    assert s is not None and s.analysed == "steady" and s.asked == "steady"
    (rank,) = steady.ranks
    start = 1_000_000_000 + sum(p[3] * MS + US for p in PHASES[:6])
    end = 1_000_000_000 + sum(p[3] * MS + US for p in PHASES[:26]) - US
    assert (rank.window_start_ns, rank.window_ns) == (start, end - start) == (s.start_ns, s.ns)
    assert len(rank.steps) == s.steps == 20 and s.whole_steps == 30
    assert sum(rank.buckets.values()) == rank.window_ns
    assert rank.own_window_ns == s.whole_ns  # the whole window stays on record
    (engine,) = s.engines
    assert engine.reason == REASON
    whole = analyze(path, jobs=1, whole_window=True)
    w = whole.steady
    assert w is not None and w.analysed == "whole" and w.asked == "whole"
    assert whole.ranks[0].window_ns == w.whole_ns == s.whole_ns and len(whole.ranks[0].steps) == 30
    assert (w.steady_start_ns, w.steady_ns) == (s.start_ns, s.ns)
    assert w.reason.startswith("the whole window is analysed (--whole-window); the steady window")
    # it survives the JSON round trip, and the report says it
    assert from_json(to_json(steady)).steady == s
    text = render(steady)
    assert "Analysed window: steady state" in text and "--whole-window" in text
    assert "Analysed window: the whole profiled window" in render(whole)


def test_cli_whole_window_option(tmp_path: Path) -> None:
    path = _trace(tmp_path / "t.json.gz", PHASES)
    runner = CliRunner()
    default = runner.invoke(main, ["analyze", "--json", "--jobs", "1", str(path)])
    whole = runner.invoke(main, ["analyze", "--json", "--jobs", "1", "--whole-window", str(path)])
    assert default.exit_code == whole.exit_code == 0, default.output + whole.output
    got = [json.loads(r.stdout)["steady"] for r in (default, whole)]
    assert [g["analysed"] for g in got] == ["steady", "whole"]
    assert got[0]["engines"][0]["first"] == 6 and got[0]["engines"][0]["last"] == 25


def test_no_rank_is_dropped_and_no_steps_say_why(tmp_path: Path) -> None:
    # two TP ranks, the second without step annotations: both analysed over the steady window
    run = tmp_path / "run"
    _trace(run / "rank0.json.gz", PHASES, rank=0)
    bare = [cpu_op("aten::mm", 0, sum(p[3] * 1000 + 1 for p in PHASES))]
    write_trace(run / "rank1.json.gz", bare, rank=1, world=2, base_ns=1_000_000_000)
    got = tracekit.analyze(run, jobs=1)
    assert got.steady is not None and got.steady.analysed == "steady"
    assert [(r.rank, r.window_ns) for r in got.ranks] == [(0, got.steady.ns), (1, got.steady.ns)]
    assert "all 2 ranks" in got.steady.reason
    alone = tracekit.analyze(run / "rank1.json.gz")
    assert alone.steady is not None and alone.steady.reason == NO_STEPS
    assert msgspec.json.decode(to_json(alone))["steady"]["analysed"] == "whole"
