"""Communication over gloo (vLLM on CPUs without its shared-memory collectives): the waits are
gloo's own ``user_annotation`` spans, not the short ``c10d::`` ops that enqueue them.

The shapes mimic torch 2.13's ProcessGroupGloo under torch.profiler (measured with two gloo
processes on CPU): ``c10d::recv_`` / ``c10d::send`` are short ``cpu_op`` events on the
calling thread; ``gloo:recv`` / ``gloo:send`` are ``user_annotation`` events on the same
thread that start inside the op and last until the transfer completes (long after the op
returned); collectives (``gloo:all_reduce`` …) are ``user_annotation`` events on one of
gloo's worker threads, while the calling thread, its op long returned, waits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tracekit
from analyzers.engine.driver import analyze, analyze_trace
from analyzers.rank.classify import FAMILY_INDEX, NOT_WORK, classify_events
from analyzers.read.loader import load
from tests.builders import TID, annotation, cpu_op, write_trace
from tests.conftest import shared
from tests.test_kv_stall import make_run
from tracekit.core.analysis import to_json
from tracekit.core.trace_model import Kind

US = 1_000
WORKER = 202  # a gloo worker thread
STEP = "execute_context_0(0)_generation_2(2)"


def span(name: str, ts: float, dur: float, tid: int = TID) -> dict[str, Any]:
    """A gloo span as torch records it: a user_annotation (RecordScope::USER_SCOPE)."""
    event = cpu_op(name, ts, dur, tid)
    return {**event, "cat": "user_annotation", "args": {"External id": 2}}


def stage1() -> list[dict[str, Any]]:
    """Receives (2 µs op, 189 µs wait), computes, all-reduces on a worker thread."""
    return [
        annotation(STEP, 0, 300),  # host activity under everything
        cpu_op("c10d::recv_", 10, 2),
        span("gloo:recv", 11, 189),  # starts inside the op, outlives it
        cpu_op("aten::mm", 200, 60),
        cpu_op("c10d::allreduce_", 260, 2),
        span("gloo:all_reduce", 263, 27, tid=WORKER),
        cpu_op("aten::add", 290, 10),
    ]


def stage0() -> list[dict[str, Any]]:
    """Computes, sends (2 µs op, 9 µs transfer), computes."""
    return [
        annotation(STEP, 0, 300),
        cpu_op("aten::mm", 10, 140),
        cpu_op("c10d::send", 150, 2),
        span("gloo:send", 151, 9),
        cpu_op("aten::mm", 160, 138),
        cpu_op("aten::add", 298, 2),
    ]


def test_gloo_spans_are_communication_other_annotations_are_not(tmp_path: Path) -> None:
    trace = load(write_trace(tmp_path / "t.json.gz", stage1()))
    (rank,) = trace.ranks
    family = classify_events(rank.events, trace.names)
    named = {
        trace.names[int(rank.events.name_id[i])]: int(family[i])
        for i in range(len(rank.events))
        if rank.events.kind[i] == Kind.ANNOTATION
    }
    assert named == {
        STEP: NOT_WORK,
        "gloo:recv": FAMILY_INDEX["p2p"],
        "gloo:all_reduce": FAMILY_INDEX["all_reduce"],
    }


def test_the_receive_wait_is_bubble_and_the_collective_wait_collective(tmp_path: Path) -> None:
    (rank,) = tracekit.analyze(write_trace(tmp_path / "t.json.gz", stage1())).ranks
    assert (rank.window_start_ns, rank.window_ns) == (10 * US, 290 * US)  # first..last op
    assert {k: v // US for k, v in rank.buckets.items() if v} == {
        "bubble": 2 + 188,  # c10d::recv_, then gloo:recv until 200
        "compute": 60,
        "collective": 2 + 27,  # c10d::allreduce_, then gloo:all_reduce on the worker
        "host": 1,  # 262..263: between the op and the worker's span
        "hbm": 10,
    }
    ops = {o.name: (o.family, o.count, o.total_ns // US) for o in rank.top_ops}
    assert ops["gloo:recv"] == ("p2p", 1, 189)
    assert ops["c10d::recv_"] == ("p2p", 1, 2)
    assert ops["gloo:all_reduce"] == ("all_reduce", 1, 27)


def test_gloo_pipeline_is_bubble_bound_not_host_bound(tmp_path: Path) -> None:
    traces = [
        ("dp0_pp0_tp0_rank0.pt.trace.json.gz", stage0(), {"rank": 0, "pp": 0}),
        ("dp0_pp1_tp0_rank1.pt.trace.json.gz", stage1(), {"rank": 1, "pp": 1}),
    ]
    run = make_run(tmp_path, [], [], layout={"pp": 2}, traces=traces)
    analysis = analyze(run, jobs=2)
    assert to_json(analysis) == to_json(analyze_trace(load(run, jobs=1)))
    first = analysis.ranks[0]
    assert {k: v // US for k, v in first.buckets.items() if v} == {
        "compute": 140 + 138,
        "bubble": 2 + 8,  # c10d::send, then gloo:send until 160
        "hbm": 2,
    }
    assert analysis.bubbles is not None
    assert [s.bubble_ns // US for s in analysis.bubbles.stages] == [10, 190]
    assert analysis.bubbles.fraction == 200 / 580
    assert analysis.regime.name == "bubble-bound"
    assert analysis.collectives is not None
    calls = {k.kind: k.calls for k in analysis.collectives.kinds}
    assert calls == {"all_reduce": 1, "p2p": 2}  # gloo's spans: one per call
    p2p = next(k for k in analysis.collectives.kinds if k.kind == "p2p")
    assert p2p.exposed_ns == 200 * US


def test_real_gloo_allreduce_spans_are_collective() -> None:
    """HTA's CPU-only trace: DDP's gloo all-reduces, recorded as user_annotation spans."""
    analysis = tracekit.analyze(shared("hta_cpu_only/rank-34.pt.trace.json.gz"))
    (rank,) = analysis.ranks
    ops = {o.name: o for o in rank.top_ops}
    assert ops["gloo:all_reduce"].family == "all_reduce"
    assert ops["gloo:all_reduce"].count == 10
    assert rank.families["all_reduce"] > 0
