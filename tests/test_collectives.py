"""Collectives across ranks, pipeline bubbles per stage and MoE routing, on tiny traces built
in code (exact µs), plus the real HTA two-rank trace (skipped where absent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tracekit
from analyzers.engine.driver import analyze_trace
from analyzers.read.loader import load
from tests.builders import annotation, cpu_op, kernel, write_trace
from tests.conftest import shared
from tests.test_kv_stall import MODEL, make_run
from tracekit.core.analysis import CollectiveKind, PipelineStage, RankWait

US = 1_000
AR = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevComm*, unsigned long, ncclWork*)"
GEMM = "ampere_bf16_s16816gemm_relu_128x128"


@pytest.fixture(autouse=True)
def no_cpu_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEKIT_HW_CACHE", str(tmp_path / "no-hw.json"))


def _gpu_rank(path: Path, rank: int, gemm_end: float, calls: list[tuple[float, float]]) -> None:
    events = [kernel(GEMM, 0, gemm_end)]
    events += [kernel(AR, s, d, stream=20) for s, d in calls]
    write_trace(path / f"rank-{rank}.json.gz", events, rank=rank, world=2, base_ns=0)


def test_exposed_overlapped_matched_and_skew(tmp_path: Path) -> None:
    _gpu_rank(tmp_path, 0, 100, [(90, 40), (200, 20), (300, 10)])
    _gpu_rank(tmp_path, 1, 120, [(110, 20), (190, 30), (305, 5)])
    analysis = tracekit.analyze(tmp_path)
    assert analysis.collectives is not None
    assert analysis.collectives.kinds == [
        CollectiveKind(
            kind="all_reduce",
            calls=6,
            exposed_ns=(30 + 20 + 10 + 10 + 30 + 5) * US,  # not hidden under the GEMMs
            overlapped_ns=(10 + 10) * US,
            matched=3,
            skew_mean_ns=(20 + 10 + 5) * US // 3,  # 20, 10 and 5 µs between arrivals
            skew_max_ns=20 * US,
            bus_bandwidth=None,  # no message sizes without a model config
            bus_bandwidth_pct=None,
            size_source=None,
        )
    ]
    assert analysis.collectives.waits == [
        RankWait("rank 0", (20 + 5) * US, 1),  # waits for rank 1 in calls 1 and 3
        RankWait("rank 1", 10 * US, 2),
    ]
    assert [r.buckets["collective"] for r in analysis.ranks] == [60 * US, 45 * US]


def test_call_counts_that_differ_are_matched_up_to_the_smallest(tmp_path: Path) -> None:
    _gpu_rank(tmp_path, 0, 10, [(20, 5), (40, 5)])
    events = [kernel(GEMM, 0, 10), kernel(AR, 20, 5, stream=20), kernel(GEMM, 40, 5)]
    write_trace(tmp_path / "rank-1.json.gz", events, rank=1, world=2, base_ns=0)  # same window
    collectives = tracekit.analyze(tmp_path).collectives
    assert collectives is not None and collectives.kinds[0].matched == 1
    assert any("call counts differ" in e and "[2, 1]" in e for e in collectives.evidence)


def _tp_rank(step_ns: float, call_us: float) -> list[dict[str, Any]]:
    """One decode step of 4 tokens with the 5 all-reduces TP issues for 2 layers."""
    events = [annotation("execute_context_0(0)_generation_4(4)", 0, step_ns)]
    events += [cpu_op("_C::shm_allreduce", 10 + 20 * i, call_us) for i in range(5)]
    return events


def test_bus_bandwidth_from_model_config(tmp_path: Path) -> None:
    traces = [
        ("dp0_pp0_tp0_rank0.pt.trace.json.gz", _tp_rank(200, 10), {"rank": 0, "tp": 0}),
        ("dp0_pp0_tp1_rank1.pt.trace.json.gz", _tp_rank(200, 15), {"rank": 1, "tp": 1}),
    ]
    run = make_run(tmp_path, [], [], model=MODEL, layout={"tp": 2}, traces=traces)
    collectives = analyze_trace(load(run)).collectives
    assert collectives is not None
    (all_reduce,) = collectives.kinds
    assert (all_reduce.calls, all_reduce.matched, all_reduce.skew_max_ns) == (10, 5, 0)
    # 4 tokens · hidden 256 · 2 B per call, 2·(2−1)/2 of it on the bus, in the faster
    # rank's 10 µs (the slower one's 15 µs would include waiting)
    assert all_reduce.bus_bandwidth == pytest.approx(4 * 256 * 2 / 10e-6)
    assert all_reduce.size_source == "model config + step tokens"
    assert all_reduce.bus_bandwidth_pct is None  # a CPU has no interconnect peak


def _stage(steps: list[tuple[float, float]], ops: list[tuple[str, float, float]]) -> list[Any]:
    return [annotation("execute_context_0(0)_generation_2(2)", s, d) for s, d in steps] + [
        cpu_op(n, s, d) for n, s, d in ops
    ]


def test_pipeline_bubbles_per_stage(tmp_path: Path) -> None:
    mm, send, recv = "_C::onednn_mm", "_C::shm_send_tensor_list", "_C::shm_recv_tensor_list"
    first = _stage(
        [(0, 100), (200, 100)], [(mm, 0, 80), (send, 80, 20), (mm, 200, 80), (send, 280, 20)]
    )
    last = _stage(
        [(0, 190), (200, 190)], [(recv, 0, 100), (mm, 100, 90), (recv, 200, 100), (mm, 300, 90)]
    )
    traces = [
        ("dp0_pp0_tp0_rank0.pt.trace.json.gz", first, {"rank": 0, "pp": 0}),
        ("dp0_pp1_tp0_rank1.pt.trace.json.gz", last, {"rank": 1, "pp": 1}),
    ]
    run = make_run(tmp_path, [], [], layout={"pp": 2}, traces=traces)
    analysis = analyze_trace(load(run))
    bubbles = analysis.bubbles
    assert bubbles is not None
    assert bubbles.stages == [
        PipelineStage(0, 1, 300 * US, 40 * US, 40 / 300),  # sends count as p2p waits too
        PipelineStage(1, 1, 300 * US, 200 * US, 200 / 300),  # stage 0's window: 0..300 µs
    ]
    assert bubbles.fraction == 240 / 600
    # stage 0 sits 90 µs after its first step while stage 1 still works on it
    assert any("pp0 0.09 ms, pp1 0.00 ms" in e for e in bubbles.evidence)
    assert analysis.regime.name == "bubble-bound"
    p2p = next(k for k in analysis.collectives.kinds if k.kind == "p2p")  # type: ignore[union-attr]
    assert (p2p.matched, p2p.skew_max_ns) == (2, 80 * US)  # the i-th send and recv


def test_moe_routing_against_expert_work(tmp_path: Path) -> None:
    events = [
        kernel("topkGatingSoftmax", 0, 20),
        kernel("fused_moe_kernel", 20, 80),
        kernel(GEMM, 100, 100),
    ]
    path = write_trace(tmp_path / "moe.json.gz", events)
    moe = tracekit.analyze(path).moe
    assert moe is not None
    assert (moe.routing_ns, moe.expert_ns, moe.routing_share) == (20 * US, 80 * US, 0.2)
    assert any("not measurable" in e for e in moe.evidence)
    plain = write_trace(tmp_path / "dense.json.gz", [kernel(GEMM, 0, 10)])
    assert tracekit.analyze(plain).moe is None


@pytest.mark.shared_traces
def test_hta_two_ranks_show_exposed_p2p_and_skew() -> None:
    analysis = tracekit.analyze(shared("hta_2rank"))
    assert analysis.collectives is not None
    (p2p,) = analysis.collectives.kinds
    assert (p2p.kind, p2p.calls, p2p.matched) == ("p2p", 20, 10)
    assert p2p.exposed_ns > 0 and p2p.overlapped_ns > 0 and p2p.skew_max_ns > 0
    assert {w.label for w in analysis.collectives.waits} == {"rank 0", "rank 1"}
    assert sum(w.last_arrivals for w in analysis.collectives.waits) == 10
    assert analysis.bubbles is None  # no pipeline stages in a training trace


def _sized(name: str, ts: float, dur: float, nelems: int, group: int | str) -> dict[str, Any]:
    """An NCCL kernel carrying Kineto's collective args (PyTorch >= 2.1 writes them)."""
    event = kernel(name, ts, dur, stream=20)
    event["args"] |= {
        "In msg nelems": nelems,
        "Out msg nelems": nelems,
        "dtype": "BFloat16",
        "Group size": group,
    }
    return event


BCAST = "ncclDevKernel_Broadcast_RING_LL(ncclDevComm*, unsigned long, ncclWork*)"


def test_bus_bandwidth_from_the_traces_own_sizes_and_group(tmp_path: Path) -> None:
    """Two ranks of a world of 8 (a communicator of 4, from Group size): the matched calls
    are timed by the shorter, factor 2 (4 - 1) / 4; nothing here comes from a model."""
    for rank, durs in ((0, (10, 20)), (1, (15, 10))):
        events = [_sized(AR, 100 * i, d, 1_000_000, 4) for i, d in enumerate(durs)]
        write_trace(tmp_path / f"rank-{rank}.json.gz", events, rank=rank, world=8, base_ns=0)
    analysis = tracekit.analyze(tmp_path, jobs=1)
    assert analysis.collectives is not None
    (kind,) = analysis.collectives.kinds
    bus = 2 * 2_000_000 * 1.5 / ((10 + 10) * 1e-6)  # 2 calls of 2 MB, shortest 10 µs each
    assert kind.bus_bandwidth == pytest.approx(bus)
    assert kind.size_source is not None and kind.size_source.startswith("trace: Kineto")
    assert not any("lower bound" in e for e in analysis.collectives.evidence)


def test_one_rank_gives_a_lower_bound_and_a_group_of_one_moves_nothing(tmp_path: Path) -> None:
    events = [
        _sized(AR, 0, 20, 500_000, 2),  # 1 MB over 2 ranks: factor 1
        _sized(BCAST, 100, 10, 500_000, 1),  # a communicator of one: left out
        _sized(BCAST, 200, 10, 500_000, "two"),  # unreadable: counted as ignored
    ]
    write_trace(tmp_path / "rank-0.json.gz", events, rank=0, world=2, base_ns=0)
    analysis = tracekit.analyze(tmp_path)
    assert analysis.collectives is not None
    kinds = {k.kind: k for k in analysis.collectives.kinds}
    assert kinds["all_reduce"].bus_bandwidth == pytest.approx(1_000_000 / 20e-6)
    # broadcast's factor is 1 whatever n is (NCCL): only the group of one is left out
    assert kinds["other_collective"].bus_bandwidth == pytest.approx(1_000_000 / 10e-6)
    assert (
        "all_reduce, other_collective: bus bandwidth includes calls seen on one rank only, "
        "timed by that rank (its wait for the others included): a lower bound"
    ) in analysis.collectives.evidence
    assert analysis.ranks[0].ignored == {"collective group sizes not modelled ('Group size')": 1}


def test_bus_bandwidth_on_the_real_nccl_trace_matches_its_own_args() -> None:
    """hta_nccl_relative_ts (one A100 rank): every NCCL kernel's args, read here with json,
    give the same bus bandwidth as the report (a lower bound: one rank's durations)."""
    import gzip
    import json

    path = shared("hta_nccl_relative_ts/rank-0.json.gz")
    doc = json.loads(gzip.decompress(path.read_bytes()))
    size = dur = 0.0
    for e in doc["traceEvents"]:
        args = e.get("args") or {}
        if e.get("cat") == "kernel" and "AllReduce" in e["name"] and "In msg nelems" in args:
            n = args["Group size"]
            nbytes = max(args["In msg nelems"], args["Out msg nelems"]) * 4  # Float
            size += nbytes * 2 * (n - 1) / n
            dur += e["dur"] * 1e-6
    collectives = tracekit.analyze(path).collectives
    assert collectives is not None
    kinds = {k.kind: k for k in collectives.kinds}
    assert kinds["all_reduce"].calls == 15
    assert kinds["all_reduce"].bus_bandwidth == pytest.approx(size / dur, rel=1e-6)


def test_sized_calls_on_one_rank_without_their_group_size(tmp_path: Path) -> None:
    """One rank file of a bigger run (hta_2rank's rank 0 alone): NCCL calls with message
    sizes but no ``Group size``, seen on this rank only. A broadcast moves its bytes whatever
    the communicator's size: it counts, as a stated lower bound. An all-reduce's factor needs
    that size: no bus bandwidth, and the report says why. (Several calls of each: a per-call
    factor once came out as one value, an IndexError.)"""
    events = [kernel(GEMM, 0, 200)]
    for i in range(5):
        call = kernel(AR if i < 2 else BCAST, 10 + 20 * i, 5, stream=20)
        call["args"] |= {"In msg nelems": 1024, "Out msg nelems": 1024, "dtype": "Float"}
        events.append(call)
    write_trace(tmp_path / "rank-0.json.gz", events, rank=0, world=8, base_ns=0)
    collectives = tracekit.analyze(tmp_path / "rank-0.json.gz").collectives
    assert collectives is not None
    kinds = {k.kind: k for k in collectives.kinds}
    assert (kinds["all_reduce"].calls, kinds["all_reduce"].bus_bandwidth) == (2, None)
    assert kinds["other_collective"].calls == 3
    assert kinds["other_collective"].bus_bandwidth == pytest.approx(4096 / 5e-6)
    assert collectives.evidence[:2] == [
        "other_collective: bus bandwidth includes calls seen on one rank only, timed by that "
        "rank (its wait for the others included): a lower bound",
        "all_reduce: message sizes known but not the communicator's size (neither the layout "
        "nor a complete set of ranks says it): no bus bandwidth",
    ]
