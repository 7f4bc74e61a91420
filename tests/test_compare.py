"""tracekit compare: runs built in code with exactly known step times, tokens and buckets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from tests.builders import annotation, kernel, write_trace
from tracekit.cli import main
from tracekit.cli_compare import compare_command
from tracekit.compare import COMPARE_SCHEMA_VERSION, compare, from_json, to_json
from tracekit.core import rundir
from tracekit.core.errors import TracekitError
from tracekit.core.layout import Layout
from tracekit.render.compare import render

US = 1_000
BASE = 1_700_000_000_000_000_000
GEMM = "ampere_bf16_s16816gemm_bf16_128x128"
ATTN = "paged_attention_v2_kernel"
ALL_REDUCE = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
H100 = {"deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3"}]}
MODEL = {"architecture": "LlamaForCausalLM", "layers": 2, "heads": 4, "kv_heads": 2}

if "compare" not in main.commands:  # until tracekit/cli.py registers it
    main.add_command(compare_command)


@dataclass(frozen=True)
class Shape:
    """One rank's profiled window: 4 decode steps of ``step`` µs, each a GEMM at the step's
    start, host time, then attention and the all-reduce ending the step (so the analysed
    window is exactly the 4 steps)."""

    step: int
    gemm: int
    attn: int
    all_reduce: int = 0


def _events(shape: Shape) -> list[dict[str, object]]:
    events = []
    for i in range(4):
        t, end = i * shape.step, (i + 1) * shape.step
        events.append(annotation("execute_context_0(0)_generation_8(8)", t, shape.step))
        events.append(kernel(GEMM, t, shape.gemm))
        events.append(kernel(ATTN, end - shape.all_reduce - shape.attn, shape.attn))
        if shape.all_reduce:
            events.append(kernel(ALL_REDUCE, end - shape.all_reduce, shape.all_reduce, 20))
    return events


def _run(
    root: Path,
    name: str,
    shape: Shape,
    engines: list[list[int]] | None,
    *,
    dp: int = 1,
    tp: int = 1,
    manifest: bool = True,
) -> Path:
    """A run: ``dp × tp`` ranks of ``shape``; ``engines[d]``: engine d's step times in µs
    (8 decode tokens each) in ``steps/``. ``manifest=False``: a plain folder of traces."""
    run = root / name
    traces = run / rundir.TRACES if manifest else run
    entries = []
    for d in range(dp):
        for t in range(tp):
            file = f"dp{d}_pp0_tp{t}_rank{t}.pt.trace.json.gz"
            write_trace(traces / file, _events(shape), rank=t, world=tp, base_ns=BASE, extra=H100)
            entries.append(rundir.RankEntry(file, rank=t, dp=d, pp=0, tp=t))
    if not manifest:
        return run
    for d, times in enumerate(engines or []):
        records = [
            rundir.StepRecord(ts_ns=BASE + us * US, engine=d, decode_tokens=8) for us in times
        ]
        path = run / rundir.STEPS / f"engine-{d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in records))
    rundir.write_manifest(
        run,
        rundir.Manifest(
            tracekit_version="0.1.0",
            status="complete",
            layout=Layout(dp=dp, tp=tp),
            model=MODEL,
            ranks=entries,
        ),
    )
    return run


def _every(step_us: int, n: int) -> list[int]:
    return [i * step_us for i in range(n)]


# TP=1: compute-bound; 6 engine steps every 1250 µs, with one 57 ms idle gap (counted as one
# median step): 48 tokens / 7.5 ms = 6400 tok/s.
TP1 = Shape(1000, gemm=600, attn=300)
TP1_STEPS = [0, 1250, 2500, 3750, 60750, 62000]
# TP=2: 25% of each step in exposed all-reduce; 6 steps every 800 µs: 48 / 4.8 ms = 10000 tok/s.
TP2 = Shape(800, gemm=300, attn=150, all_reduce=250)
# DP=2: two TP=1 replicas, each 3 steps every 1000 µs: 2 × 24 / 3 ms = 16000 tok/s.
DP2 = TP1


@pytest.fixture
def sweep(tmp_path: Path) -> list[Path]:
    return [
        _run(tmp_path, "tp2", TP2, [_every(800, 6)], tp=2),
        _run(tmp_path, "tp1", TP1, [TP1_STEPS]),
        _run(tmp_path, "dp2", DP2, [_every(1000, 3), _every(1000, 3)], dp=2),
    ]


def test_throughput_ordering_and_shares(sweep: list[Path]) -> None:
    c = compare(sweep)
    assert [r.name for r in c.runs] == ["tp1", "dp2", "tp2"]  # devices, then TP, PP, DP
    assert [r.layout_label for r in c.runs] == ["TP=1", "DP=2", "TP=2"]
    assert [(r.layout.dp, r.layout.tp, r.layout_source) for r in c.runs] == [
        (1, 1, "manifest"),
        (2, 1, "manifest"),
        (1, 2, "manifest"),
    ]
    assert [(r.devices, r.device_kind, r.ranks) for r in c.runs] == [
        (1, "H100 80GB HBM3", 1),
        (2, "H100 80GB HBM3", 2),
        (2, "H100 80GB HBM3", 2),
    ]
    got = [r.throughput for r in c.runs]
    assert all(t is not None and t.basis == "engine" for t in got)
    assert [(t.tokens, t.busy_ns, t.excluded_ns) for t in got if t] == [
        (48, 7_500 * US, 55_750 * US),
        (48, 3_000 * US, 0),
        (48, 4_800 * US, 0),
    ]
    assert [round(t.tokens_per_s, 6) for t in got if t] == [6400, 16000, 10000]
    assert [round(t.tokens_per_s_per_device, 6) for t in got if t] == [6400, 8000, 5000]
    tp1, _, tp2 = c.runs
    assert (tp1.decode_p50_ns, tp1.decode_p90_ns, tp1.latency_steps) == (1e6, 1e6, "decode")
    assert tp2.decode_p50_ns == 800 * US
    assert {k: round(v, 6) for k, v in tp1.shares.items() if v} == {
        "compute": 0.6,
        "hbm": 0.3,
        "host": 0.1,
    }
    assert {k: round(v, 6) for k, v in tp2.shares.items() if v} == {
        "compute": 0.375,
        "hbm": 0.1875,
        "collective": 0.3125,
        "host": 0.125,
    }
    assert [r.regime for r in c.runs] == ["compute-bound", "compute-bound", "interconnect-bound"]
    assert c.warnings == []
    assert list(c.bases) == ["engine"]


def test_crossover_and_scaling_findings(sweep: list[Path]) -> None:
    same, scaling = compare(sweep).findings
    assert (same.kind, same.devices, same.faster, same.slower) == (
        "same-devices",
        [2],
        "dp2",
        "tp2",
    )
    assert (same.ratio, same.bucket, same.slower_share, same.faster_share) == (
        1.6,
        "collective",
        0.3125,
        0.0,
    )
    assert same.regimes == ["compute-bound", "interconnect-bound"]
    assert same.text == (
        "at 2 device(s) DP=2 (dp2) is 1.60× TP=2 (tp2) per device (8,000.0 vs 5,000.0 "
        "tok/s/device): TP=2 spends 31.2% in exposed collectives (interconnect) vs DP=2 0.0%, "
        "12.5% in host overhead (launch / scheduling) vs DP=2 10.0%; regime interconnect-bound "
        "vs compute-bound"
    )
    assert (scaling.kind, scaling.devices, scaling.faster, scaling.slower) == (
        "scaling",
        [1, 2],
        "dp2",
        "tp1",
    )
    assert scaling.text == (
        "scaling 1 → 2 device(s): DP=2 gives 2.50× the throughput of TP=1 (125% per-device "
        "efficiency); per device DP=2 is faster (1.25×): no bucket share differs by 1% or "
        "more; both compute-bound"
    )


def test_leader_change_between_device_counts_is_the_crossover(
    tmp_path: Path, sweep: list[Path]
) -> None:
    # At 4 devices TP wins: DP=4 replicas are host-bound and step every 4 ms: 4 × 2000 tok/s.
    tp4 = _run(
        tmp_path, "tp4", Shape(500, gemm=300, attn=100, all_reduce=50), [_every(500, 6)], tp=4
    )
    slow = [_every(4000, 3) for _ in range(4)]
    dp4 = _run(tmp_path, "dp4", Shape(1000, gemm=200, attn=100), slow, dp=4)
    c = compare([*sweep, dp4, tp4])
    assert [r.name for r in c.runs] == ["tp1", "dp2", "tp2", "dp4", "tp4"]
    assert [round(r.throughput.tokens_per_s_per_device) for r in c.runs if r.throughput] == [
        6400,
        8000,
        5000,
        2000,
        4000,
    ]
    assert [f.kind for f in c.findings] == [
        "same-devices",
        "same-devices",
        "crossover",
        "scaling",
        "scaling",
    ]
    crossover = c.findings[2]
    assert (crossover.devices, crossover.faster, crossover.slower) == ([2, 4], "tp4", "dp4")
    assert crossover.text == (
        "crossover: DP leads per device at 2 device(s) (DP=2), TP overtakes at 4 device(s) "
        "(TP=4, 2.00× DP=4): DP=4 spends 70.0% in host overhead (launch / scheduling) vs TP=4 "
        "10.0%; regime host-bound vs compute-bound"
    )
    assert c.warnings == [
        "runs generated different token counts (tp1 48, dp2 48, tp2 48, dp4 96, tp4 48): "
        "check they ran one workload"
    ]


def test_plain_trace_folder_uses_profiled_steps_and_rank_identities(
    tmp_path: Path, sweep: list[Path]
) -> None:
    folder = _run(tmp_path, "folder", TP2, None, tp=2, manifest=False)
    c = compare([sweep[1], folder])
    plain = c.runs[1]
    assert (plain.layout.dp, plain.layout.tp, plain.layout.pp, plain.layout_source) == (
        1,
        2,
        1,
        "ranks",
    )
    assert plain.throughput is not None
    t = plain.throughput
    # One TP replica (both ranks annotate the same steps): 32 tokens over 4 × 800 µs.
    assert (t.basis, t.tokens, t.busy_ns) == ("profile", 32, 3_200 * US)
    assert (round(t.tokens_per_s), round(t.tokens_per_s_per_device)) == (10000, 5000)
    assert plain.status is None
    assert set(c.bases) == {"engine", "profile"}
    assert "throughput bases differ across runs: per-device figures are approximate" in c.warnings


def test_render_has_the_table_chart_and_findings(sweep: list[Path]) -> None:
    out = render(compare(sweep), width=200)
    lines = out.splitlines()
    rows = [line.split() for line in lines if line.split()[:1] in (["tp1"], ["dp2"], ["tp2"])]
    assert [r[:2] for r in rows] == [["tp1", "TP=1"], ["dp2", "DP=2"], ["tp2", "TP=2"]]
    assert rows[2][-1] == "interconnect-bound" and "31.2" in rows[2]
    assert any(line.startswith("DP=2 · 2 dev (dp2)") and "8,000.0" in line for line in lines)
    assert "• at 2 device(s) DP=2 (dp2) is 1.60× TP=2 (tp2) per device" in out


def test_json_round_trip_and_cli(sweep: list[Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["compare", "--json", *map(str, sweep)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == COMPARE_SCHEMA_VERSION == 2
    assert [r["name"] for r in doc["runs"]] == ["tp1", "dp2", "tp2"]
    assert doc["runs"][1]["layout"] == {"dp": 2, "tp": 1, "pp": 1, "ep": 1}
    assert doc["runs"][1]["layout_source"] == "manifest"
    assert doc["runs"][2]["throughput"]["tokens_per_s_per_device"] == 5000.0
    assert doc["runs"][2]["shares"]["collective"] == 0.3125
    assert doc["findings"][0]["faster"] == "dp2"
    assert from_json(result.stdout_bytes) == compare(sweep)
    assert to_json(from_json(result.stdout_bytes)) + b"\n" == result.stdout_bytes
    table = runner.invoke(main, ["compare", *map(str, sweep)])
    assert table.exit_code == 0, table.output
    assert "Layout sweep" in table.stdout and "Throughput per device" in table.stdout


def test_bad_input_is_one_line_exit_2(tmp_path: Path, sweep: list[Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["compare", str(sweep[0]), str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert result.stderr.startswith("tracekit: error: ") and result.stderr.count("\n") == 1
    assert "missing" in result.stderr
    one = runner.invoke(main, ["compare", str(sweep[0])])
    assert one.exit_code == 2 and "at least two runs" in one.output
    with pytest.raises(TracekitError, match="not a tracekit comparison"):
        from_json(b'{"schema_version": 2}')
    newer = to_json(compare(sweep)).replace(b'"schema_version": 2', b'"schema_version": 3')
    with pytest.raises(TracekitError, match="schema_version 3"):
        from_json(newer)
