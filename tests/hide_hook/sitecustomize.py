"""Test-only: make one vLLM hook point unavailable, as an older or newer vLLM might.

``TRACEKIT_TEST_HIDE=module:Owner.attr`` deletes ``Owner.attr`` from ``module`` as soon as the
module is imported, in every Python process that starts with this folder on ``PYTHONPATH``
(the engine core and each worker too): a capture then meets a vLLM without that hook point.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Any

_SPEC = os.environ.get("TRACEKIT_TEST_HIDE", "")
_MODULE, _, _PATH = _SPEC.partition(":")


class _HideOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != _MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def hidden(module: ModuleType) -> None:
            exec_module(module)
            *owner, attr = _PATH.split(".")
            target: Any = module
            for part in owner:
                target = getattr(target, part)
            delattr(target, attr)

        loader.exec_module = hidden  # type: ignore[method-assign]
        return spec


if _MODULE and _PATH:
    sys.meta_path.insert(0, _HideOnImport())
