"""The vLLM plugin (entry point ``vllm.general_plugins``), loaded in every vLLM process.

It does nothing unless ``tracekit capture`` set ``TRACEKIT_CAPTURE_DIR``: installing tracekit
never changes a plain vLLM run. Under a capture it installs, once per process:

* in the front end: vLLM's own profiler configuration (torch profiler into the run
  directory, no Python stacks), unless the user configured one themselves; and, under
  ``tracekit sweep``, the layout in ``TRACEKIT_LAYOUT`` (TP / PP / DP degrees and expert
  parallelism set on ``EngineArgs`` before the engine configuration is built);
* in the engine core: the profiled window and per-step stats (``collectors.engine_hooks``);
* in workers: phase ranges and unique trace names (``collectors.worker_hooks``), and on
  global rank 0 the device peaks, measured once before the first step (``collectors.peaks``).
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

from collectors.settings import META, Settings, from_env

if TYPE_CHECKING:
    from collectors.vllm_features import Resolved

log = logging.getLogger(__name__)
_INSTALLED: list[bool] = []  # once per process: vLLM may load plugins several times


def register() -> None:
    settings = from_env()
    if settings is None or _INSTALLED:
        return
    _INSTALLED.append(True)
    _warn_outside_range()
    failed: dict[str, str] = {}
    found = _resolve_hooks()  # before the installers: they add what older releases lack
    for name, install in (
        ("engine-args hook (profiler config, layout)", _install_engine_args_hook),
        ("engine hooks", _install_engine_hooks),
        ("worker hooks", _install_worker_hooks),
        ("peaks probe", _install_peaks_probe),
    ):
        try:
            install(settings)
        except Exception as exc:  # an unknown vLLM version must not break the user's run
            log.warning("tracekit: %s not installed (%s: %s)", name, type(exc).__name__, exc)
            failed[name] = f"{type(exc).__name__}: {exc}"
    _record_hooks(settings, found, failed)


def _warn_outside_range() -> None:
    from collectors.vllm_features import vllm_version
    from tracekit.core.version import vllm_support

    note = vllm_support(vllm_version())
    if note:
        log.warning("tracekit: %s", note)


def _resolve_hooks() -> list[Resolved]:
    try:
        from collectors.vllm_features import resolve

        return resolve()
    except Exception as exc:
        log.warning("tracekit: could not look for vLLM's hook points (%s)", exc)
        return []


def _record_hooks(settings: Settings, got: list[Resolved], failed: dict[str, str]) -> None:
    """What this process found of vLLM's hook points (``collectors.vllm_features``) and which
    installers failed, for the manifest (``meta/hooks-PID.json``); never fails the run."""
    try:
        from collectors.vllm_features import vllm_version

        record = {
            "vllm": vllm_version(),
            "resolved": [r.point.name for r in got if r.ok],
            "missing": {r.point.name: f"{r.why}; {r.point.loses}" for r in got if not r.ok},
            "failed": failed,
        }
        meta = settings.run_dir / META
        meta.mkdir(parents=True, exist_ok=True)
        (meta / f"hooks-{os.getpid()}.json").write_text(json.dumps(record))
    except Exception as exc:
        log.warning("tracekit: could not record vLLM's hook points (%s)", exc)


def _install_engine_hooks(settings: Settings) -> None:
    from collectors import engine_hooks

    engine_hooks.install(settings)


def _install_worker_hooks(settings: Settings) -> None:
    from collectors import worker_hooks

    worker_hooks.install(settings)


def _install_peaks_probe(settings: Settings) -> None:
    from collectors import peaks

    peaks.install(settings)


def _install_engine_args_hook(settings: Settings) -> None:
    """Wrap ``EngineArgs.create_engine_config``: profiler config (full mode) and layout."""
    layout = None
    if settings.layout:
        from collectors.layout import parse_layout

        layout = parse_layout(settings.layout)  # bad spec: warned by register, run untouched
    if settings.mode != "full" and layout is None:
        return
    from vllm.engine.arg_utils import EngineArgs

    if getattr(EngineArgs.create_engine_config, "__tracekit__", False):
        return
    original = EngineArgs.create_engine_config

    def create_engine_config(self: Any, *args: Any, **kwargs: Any) -> Any:
        if layout is not None:
            log.info("tracekit: layout %s set on vLLM's engine arguments", layout.spec)
            self.tensor_parallel_size = layout.tp
            self.pipeline_parallel_size = layout.pp
            self.data_parallel_size = layout.dp
            self.enable_expert_parallel = layout.experts
        if settings.mode == "full":
            _set_profiler_config(self, settings)
        return original(self, *args, **kwargs)

    create_engine_config.__tracekit__ = True  # type: ignore[attr-defined]
    EngineArgs.create_engine_config = create_engine_config


def _set_profiler_config(engine_args: Any, settings: Settings) -> None:
    from vllm.config import ProfilerConfig

    current = engine_args.profiler_config
    if isinstance(current, dict):
        current = ProfilerConfig(**current)
    if current is None or current.profiler is None:
        from collectors.vllm_features import profiler_extras, window_mechanism

        settings.raw_trace_dir.mkdir(parents=True, exist_ok=True)
        window = {}
        if window_mechanism() == "config":  # profile() takes no window: the config carries it
            window = {"delay_iterations": settings.warmup_steps, "max_iterations": settings.steps}
        engine_args.profiler_config = ProfilerConfig(
            profiler="torch",
            torch_profiler_dir=str(settings.raw_trace_dir),
            torch_profiler_with_stack=False,
            torch_profiler_record_shapes=settings.record_shapes,
            ignore_frontend=True,
            **window,
            **profiler_extras(),
        )
    else:
        log.warning(
            "tracekit: keeping the profiler configuration given to vLLM; traces go to %s",
            current.torch_profiler_dir,
        )
