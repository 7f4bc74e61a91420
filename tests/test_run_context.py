"""Honest context: profiler overhead, steps left out of means, window vs whole run, advice that
fits the device, and max_num_seqs against the KV ceiling — tiny runs built in code."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import numpy as np
import pytest

from analyzers.engine.driver import analyze_trace
from analyzers.rank.kv_stall import stalled
from analyzers.read.loader import load
from analyzers.read.run_config import execution, scheduler_limits
from analyzers.run.engine_timeline import engine_stats
from analyzers.run.step_flags import window_outliers
from analyzers.run.verdict import Reports, verdict
from collectors import capture
from collectors.engine_hooks import write_engine_meta
from collectors.settings import META, Settings
from tests.builders import annotation, cpu_op
from tests.test_kv_stall import KV_CACHE, MODEL, make_run, step_events
from tracekit.core import rundir
from tracekit.core.analysis import RankResult, from_json, to_json
from tracekit.core.buckets import BUCKETS
from tracekit.core.run_context import RunContext
from tracekit.core.rundir import StepRecord
from tracekit.core.trace_model import RankId
from tracekit.render.console import render

US = 1_000
U = 100 * US  # one time unit of the overhead run: 0.1 ms


def _records() -> list[StepRecord]:
    """(prefill, decode) shapes and durations in U (until the next record; the last lasts the
    median gap, 12): r0 cold; r3–r5 profiled (the trace's steps); r2 and r6 next to the
    window; r6 also a long gap (the trace export); r1, r7, r8, r9 unprofiled."""
    plan = [  # (shape, duration U, kv usage, running, waiting)
        ((8, 0), 50, 0.9, 1, 0),
        ((0, 2), 10, 0.1, 2, 0),
        ((0, 2), 10, 0.1, 2, 0),
        ((0, 2), 12, 0.1, 2, 0),
        ((0, 2), 15, 0.1, 2, 0),
        ((0, 4), 13, 0.1, 2, 0),
        ((0, 2), 300, 0.1, 2, 3),
        ((0, 2), 10, 0.1, 2, 0),
        ((0, 4), 10, 0.1, 2, 0),
        ((0, 2), 0, 0.1, 2, 0),
    ]
    out, ts = [], 0
    for (prefill, decode), dur, kv, running, waiting in plan:
        out.append(
            StepRecord(
                ts_ns=ts,
                running=running,
                waiting=waiting,
                kv_usage=kv,
                prefill_tokens=prefill,
                decode_tokens=decode,
            )
        )
        ts += dur * U
    return out


def _window_events() -> list[dict[str, Any]]:
    """The trace's three steps, each 0.1 ms after its record was stamped (times in µs)."""
    events = []
    for start_u, (n, t, m, g) in ((70, (0, 0, 2, 2)), (82, (0, 0, 2, 2)), (97, (0, 0, 2, 4))):
        ts = (start_u + 1) * U / US
        events.append(annotation(f"execute_context_{n}({t})_generation_{m}({g})", ts, 500))
        events.append(cpu_op("_C::onednn_mm", ts + 10, 300))
    return events


def _set_manifest(run: Path, **fields: Any) -> None:
    manifest = rundir.read_manifest(run)
    rundir.write_manifest(run, msgspec.structs.replace(manifest, **fields))


def test_overhead_from_profiled_and_unprofiled_steps_of_the_same_shape(tmp_path: Path) -> None:
    run = make_run(tmp_path, _window_events(), _records(), model=MODEL, kv_cache=KV_CACHE)
    analysis = analyze_trace(load(run))
    ctx = analysis.context
    assert ctx is not None
    o = ctx.overhead
    # (0,2): 12/10, 15/10; (0,4): 13/10 against the unprofiled medians 10 and 10
    assert (o.ratio.value, o.pairs, o.shapes) == (1.3, 3, 2)
    assert o.added_share.value == round(1 - 1 / 1.3, 4)
    assert (o.profiled_steps, o.unprofiled_steps) == (3, 4)  # r1, r7, r8, r9
    assert o.ratio.source.startswith("steps/")
    assert (ctx.window_steps, ctx.run_steps, ctx.run_ns) == (3, 10, 442 * U)
    assert from_json(to_json(analysis)).context == ctx  # schema round trip
    out = render(analysis, width=200)
    assert "profiled steps took 1.30× as long as unprofiled steps" in out
    assert "median of 3 pair(s), 2 shape(s)" in out


def test_cold_step_and_long_gap_left_out_of_means(tmp_path: Path) -> None:
    records = _records()
    engine = engine_stats(records)
    assert engine is not None
    # r0 (cold, kv 0.9, running 1) and r6 (300 U gap, waiting) are left out
    assert (engine.excluded_steps, engine.excluded_ns) == (2, 350 * U)
    assert engine.kv_usage_mean == pytest.approx(0.1)
    assert engine.running_mean == pytest.approx(2.0)
    assert engine.waiting_share == 0.0
    assert (engine.steps, engine.step_time_ns, engine.running_max) == (10, 442 * U, 2)
    assert engine.scope == "whole run (steps/)"
    run = make_run(tmp_path, _window_events(), records, model=MODEL, kv_cache=KV_CACHE)
    analysis = analyze_trace(load(run))
    ex = analysis.context.excluded if analysis.context else None
    assert ex is not None
    assert (ex.steps, ex.total_ns, ex.share) == (2, 350 * U, round(350 / 442, 6))
    assert [(s.ts_ns, s.dur_ns) for s in ex.listed] == [(110 * U, 300 * U), (0, 50 * U)]
    assert ex.listed[0].reason == "long gap: 25× the median step (1.20 ms)"
    assert ex.listed[1].reason.startswith("first step (cold")
    out = render(analysis, width=200)
    assert "left out of means and time-weighted figures: 2 step(s), 35.00 ms" in out
    assert "Scheduler and KV cache over time, whole run" in out
    assert "Engine steps in the profiled window" in out


def test_overhead_not_measured_says_why(tmp_path: Path) -> None:
    # every record is inside the profiled window: nothing unprofiled to compare with
    records = [r for r in _records() if r.ts_ns in (70 * U, 82 * U, 97 * U)]
    run = make_run(tmp_path, _window_events(), records, model=MODEL, kv_cache=KV_CACHE)
    ctx = analyze_trace(load(run)).context
    assert ctx is not None
    assert ctx.overhead.ratio.value is None and ctx.overhead.pairs == 0
    assert "no unprofiled step has the shape" in (ctx.overhead.ratio.note or "")
    run = make_run(tmp_path / "none", _window_events(), [], model=MODEL)
    analysis = analyze_trace(load(run))
    assert analysis.context is not None and analysis.context.excluded is None
    assert "not measured: no steps/ records" in (analysis.context.overhead.ratio.note or "")
    assert "profiler overhead: not measured: no steps/ records" in render(analysis, width=200)


def test_window_outliers_left_out_of_step_means() -> None:
    durs = np.array([10, 11, 9, 500, 10], dtype=np.int64)
    assert window_outliers(durs).tolist() == [False, False, False, True, False]
    assert not window_outliers(np.array([5], dtype=np.int64)).any()


# --- execution mode and advice ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "mode", "graphs", "source"),
    [
        ({"argv": ["python", "w.py", "--eager"]}, "eager", False, "argv: --eager"),
        ({"argv": ["vllm", "serve", "m", "--enforce-eager"]}, "eager", False, "argv"),
        ({"argv": ["python", "-c", "LLM(m, enforce_eager=True)"]}, "eager", False, "argv"),
        ({"argv": ["vllm", "serve", "m"]}, "compiled", True, "argv: vLLM CLI defaults"),
        ({"argv": ["python", "w.py"]}, "unknown", None, "not recorded"),
        (
            {"argv": ["vllm", "serve", "m", "-O", '{"cudagraph_mode": "NONE"}']},
            "compiled",
            False,
            "argv: cudagraph_mode NONE",
        ),
        (
            {
                "compilation": {
                    "enforce_eager": False,
                    "mode": "VLLM_COMPILE",
                    "cudagraph_mode": "FULL_AND_PIECEWISE",
                }
            },
            "compiled",
            True,
            "manifest compilation",
        ),
        ({"compilation": {"enforce_eager": True}}, "eager", False, "manifest compilation"),
    ],
)
def test_execution_read_from_the_run(
    manifest: dict[str, Any], mode: str, graphs: bool | None, source: str
) -> None:
    gpu = execution(manifest, "gpu")
    assert (gpu.mode, gpu.graphs) == (mode, graphs)
    assert gpu.source.startswith(source)
    assert execution(manifest, "cpu").graphs is None  # no CUDA graphs on CPU


def _rank(device: str, host: float) -> RankResult:
    window = 1_000_000
    buckets = dict.fromkeys(BUCKETS, 0)
    buckets["host"] = int(window * host)
    buckets["compute"] = window - buckets["host"]
    return RankResult(
        rank=0, identity=RankId(rank=0), label="rank 0", path="t", device=device,  # type: ignore[arg-type]
        devices=[], device_names=[], clock="test", window_start_ns=0, window_ns=window,
        buckets=buckets, families={}, overlapped={}, event_counts={}, graph_kernels=0,
        top_ops=[], unclassified=[], steps=[],
    )  # fmt: skip


def _advice(device: str, manifest: dict[str, Any], dtype: str | None = None) -> list[str]:
    run = analyze_context(device, manifest)
    regime = verdict([_rank(device, 0.6)], None, Reports(context=run, dtype=dtype))
    assert regime.name == "host-bound"
    return regime.advice


def analyze_context(device: str, manifest: dict[str, Any]) -> RunContext:
    from analyzers.run.overhead import run_context

    return run_context((), [_rank(device, 0.6)], manifest, device)  # type: ignore[arg-type]


def test_cpu_run_gets_cpu_levers_and_no_cuda_graphs() -> None:
    advice = " ".join(_advice("cpu", {"argv": ["python", "w.py", "--eager"]}))
    assert "VLLM_CPU_OMP_THREADS_BIND" in advice
    assert "compiled mode (torch.compile" in advice  # the run was eager
    assert "CUDA graph" not in advice
    assert "CUDA graph" not in " ".join(_advice("cpu", {"argv": ["vllm", "serve", "m"]}))


def test_cuda_graph_advice_only_when_a_gpu_run_had_them_off() -> None:
    off = " ".join(_advice("gpu", {"argv": ["vllm", "serve", "m", "--enforce-eager"]}))
    assert "CUDA graphs were off in this run (argv: --enforce-eager)" in off
    for manifest in ({"argv": ["vllm", "serve", "m"]}, {"argv": ["python", "w.py"]}):
        advice = " ".join(_advice("gpu", manifest))
        assert "CUDA graph" not in advice and "VLLM_CPU" not in advice


def test_cpu_compute_advice_names_bf16_isa() -> None:
    reports = Reports(context=analyze_context("cpu", {}), dtype="bfloat16")
    regime = verdict([_rank("cpu", 0.0)], None, reports)
    assert regime.name == "compute-bound"
    assert any("AVX512-BF16 or AMX" in a for a in regime.advice)
    assert any("oneDNN" in a for a in regime.advice)


# --- max_num_seqs against the KV ceiling -------------------------------------------------------


def _capped() -> list[StepRecord]:
    """Four running (= max_num_seqs) with the cache ≥90% full while two requests wait."""
    return [
        StepRecord(ts_ns=0, running=1, kv_usage=0.2, decode_tokens=1),
        *(
            StepRecord(ts_ns=i * 150 * US, running=4, waiting=2, kv_usage=0.95, decode_tokens=4)
            for i in range(1, 4)
        ),
    ]


def test_running_batch_at_max_num_seqs_is_not_capacity_bound(tmp_path: Path) -> None:
    records = _capped()
    assert stalled(records, 10).tolist() == [False, True, True, True]
    assert stalled(records, 10, max_num_seqs=4).tolist() == [False] * 4
    run = make_run(tmp_path, step_events(), records, model=MODEL, kv_cache=KV_CACHE)
    _set_manifest(run, scheduler={"max_num_seqs": 4, "max_num_batched_tokens": 2048})
    analysis = analyze_trace(load(run))
    kv = analysis.kv
    assert kv is not None
    assert (kv.max_num_seqs, kv.max_num_batched_tokens) == (4, 2048)
    assert (kv.limits_source, kv.binding_limit) == ("manifest scheduler", "max_num_seqs")
    assert kv.stalled_share == 0.0 and kv.seqs_capped_share == 1.0
    assert analysis.ranks[0].buckets["kv_stall"] == 0
    assert analysis.regime.name != "capacity-bound"
    assert any("the scheduler's limit, not the KV cache" in e for e in kv.evidence)
    # without the limit the same run reads as capacity-bound
    bare = analyze_trace(load(make_run(tmp_path / "b", step_events(), records, kv_cache=KV_CACHE)))
    assert bare.regime.name == "capacity-bound" and bare.kv and bare.kv.binding_limit == "kv_blocks"


def test_scheduler_limits_from_argv() -> None:
    argv = ["vllm", "serve", "m", "--max-num-seqs", "8", "--max-num-batched-tokens=512"]
    limits = scheduler_limits({"argv": argv})
    assert (limits.max_num_seqs, limits.max_num_batched_tokens) == (8, 512)
    assert limits.source == "manifest argv"
    kw = scheduler_limits({"argv": ["python", "-c", "LLM(m, max_num_seqs=3)"]})
    assert (kw.max_num_seqs, kw.max_num_batched_tokens) == (3, None)
    assert scheduler_limits({"argv": ["python", "w.py"]}).source is None


def test_capture_records_scheduler_and_compilation(tmp_path: Path) -> None:
    hf = SimpleNamespace(num_hidden_layers=2, hidden_size=64, num_attention_heads=4)
    config = SimpleNamespace(
        model_config=SimpleNamespace(
            model="m", hf_config=hf, hf_text_config=hf, dtype="torch.bfloat16",
            max_model_len=128, enforce_eager=True,
        ),
        parallel_config=SimpleNamespace(
            data_parallel_size=1, tensor_parallel_size=1, pipeline_parallel_size=1,
            data_parallel_index=0,
        ),
        cache_config=SimpleNamespace(block_size=16, num_gpu_blocks=10, cache_dtype="auto"),
        scheduler_config=SimpleNamespace(max_num_seqs=4, max_num_batched_tokens=256),
        compilation_config=SimpleNamespace(mode=SimpleNamespace(name="NONE"), cudagraph_mode=None),
        device_config=SimpleNamespace(device_type="cpu"),
    )  # fmt: skip
    settings = Settings(run_dir=tmp_path / "run")
    manifest = capture.prepare(settings, ["python", "w.py"])
    write_engine_meta(settings.run_dir / META / "engine-0.json", config)
    final = capture.finish(settings, manifest, 0, False)
    assert final.scheduler == {"max_num_seqs": 4, "max_num_batched_tokens": 256}
    assert final.compilation == {"enforce_eager": True, "mode": "NONE", "cudagraph_mode": None}
    read = rundir.read_manifest(settings.run_dir)
    assert read.scheduler == final.scheduler
    assert execution(msgspec.to_builtins(read), "cpu").mode == "eager"


# --- the bundled captures ----------------------------------------------------------------------

SAMPLES = Path(__file__).resolve().parents[1] / "sample_traces"


@pytest.mark.parametrize("name", ["vllm_cpu_tp2", "vllm_cpu_pp2", "vllm_cpu_moe_tp2"])
def test_bundled_samples_context(name: str) -> None:
    import tracekit

    analysis = tracekit.analyze(SAMPLES / name)
    ctx = analysis.context
    assert ctx is not None and ctx.excluded is not None
    records = rundir.read_steps(SAMPLES / name)
    assert ctx.run_steps == len(records)
    cold = [s for s in ctx.excluded.listed if s.reason.startswith("first step (cold")]
    assert [s.dur_ns for s in cold] == [records[1].ts_ns - records[0].ts_ns]
    assert ctx.overhead.pairs > 0 and ctx.overhead.ratio.value is not None
    # PP=2 on CPU runs compiled (vLLM's CPU backend needs it); the manifest records the mode
    assert ctx.execution.mode == ("compiled" if name == "vllm_cpu_pp2" else "eager")
    assert not any("CUDA graph" in a for a in analysis.regime.advice)
    assert analysis.kv is not None and analysis.kv.max_num_batched_tokens == 256
