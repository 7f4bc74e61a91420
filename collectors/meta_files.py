"""What the vLLM plugin left in a run's ``meta/`` folder, read back for the manifest.

``engine-N.json``: each engine's facts (model, layout, KV cache, scheduler, compilation;
``collectors.engine_hooks``). ``hooks-PID.json``: which of vLLM's hook points each process
found (``collectors.vllm_features``) and which parts of the plugin failed to install.
``rank-PID.json``: a worker's trace name and dp / pp / tp / ep (``collectors.worker_hooks``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collectors.settings import META


def engines(run: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((run / META).glob("engine-*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out


def worker_ranks(run: Path) -> dict[str, dict[str, Any]]:
    """Each worker's own ranks (``meta/rank-*.json``), by the name its profiler gives its
    trace."""
    out = {}
    for path in sorted((run / META).glob("rank-*.json")):
        try:
            got = json.loads(path.read_text())
            out[str(got["trace_name"])] = got
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def hooks(run: Path) -> dict[str, Any]:
    """What the vLLM processes found of their hook points (``meta/hooks-*.json``, one per
    process): a point missing in any of them is missing; an installer failing is listed."""
    resolved: set[str] = set()
    version: str | None = None
    missing: dict[str, str] = {}
    failed: dict[str, str] = {}
    for path in sorted((run / META).glob("hooks-*.json")):
        try:
            got = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        version = version or got.get("vllm")
        resolved.update(got.get("resolved", []))
        missing.update(got.get("missing", {}))
        failed.update(got.get("failed", {}))
    if not (resolved or missing or failed):
        return {}
    out = {"resolved": sorted(resolved - set(missing)), "missing": missing, "failed": failed}
    return {**out, "vllm": version} if version else out
