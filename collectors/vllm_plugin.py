"""The vLLM plugin (entry point ``vllm.general_plugins``), loaded in every vLLM process.

It does nothing unless ``tracekit capture`` set ``TRACEKIT_CAPTURE_DIR``: installing tracekit
never changes a plain vLLM run. Under a capture it installs, once per process:

* in the front end: vLLM's own profiler configuration (torch profiler into the run
  directory, no Python stacks), unless the user configured one themselves;
* in the engine core: the profiled window and per-step stats (``collectors.engine_hooks``);
* in workers: phase ranges and unique trace names (``collectors.worker_hooks``).
"""

from __future__ import annotations

import logging
from typing import Any

from collectors.settings import Settings, from_env

log = logging.getLogger(__name__)
_INSTALLED: list[bool] = []  # once per process: vLLM may load plugins several times


def register() -> None:
    settings = from_env()
    if settings is None or _INSTALLED:
        return
    _INSTALLED.append(True)
    for name, install in (
        ("profiler config", _install_profiler_config),
        ("engine hooks", _install_engine_hooks),
        ("worker hooks", _install_worker_hooks),
    ):
        try:
            install(settings)
        except Exception as exc:  # an unknown vLLM version must not break the user's run
            log.warning("tracekit: %s not installed (%s: %s)", name, type(exc).__name__, exc)


def _install_engine_hooks(settings: Settings) -> None:
    from collectors import engine_hooks

    engine_hooks.install(settings)


def _install_worker_hooks(settings: Settings) -> None:
    from collectors import worker_hooks

    worker_hooks.install(settings)


def _install_profiler_config(settings: Settings) -> None:
    if settings.mode != "full":
        return
    from vllm.config import ProfilerConfig
    from vllm.engine.arg_utils import EngineArgs

    if getattr(EngineArgs.create_engine_config, "__tracekit__", False):
        return
    original = EngineArgs.create_engine_config

    def create_engine_config(self: Any, *args: Any, **kwargs: Any) -> Any:
        current = self.profiler_config
        if isinstance(current, dict):
            current = ProfilerConfig(**current)
        if current is None or current.profiler is None:
            settings.raw_trace_dir.mkdir(parents=True, exist_ok=True)
            self.profiler_config = ProfilerConfig(
                profiler="torch",
                torch_profiler_dir=str(settings.raw_trace_dir),
                torch_profiler_with_stack=False,
                torch_profiler_record_shapes=settings.record_shapes,
                ignore_frontend=True,
            )
        else:
            log.warning(
                "tracekit: keeping the profiler configuration given to vLLM; traces go to %s",
                current.torch_profiler_dir,
            )
        return original(self, *args, **kwargs)

    create_engine_config.__tracekit__ = True  # type: ignore[attr-defined]
    EngineArgs.create_engine_config = create_engine_config
