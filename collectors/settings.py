"""What the capture wrapper tells the vLLM plugin, through the environment.

The plugin is inert unless ``TRACEKIT_CAPTURE_DIR`` is set, so installing tracekit never
changes a plain vLLM run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ENV_DIR = "TRACEKIT_CAPTURE_DIR"
ENV_MODE = "TRACEKIT_CAPTURE_MODE"
ENV_WARMUP = "TRACEKIT_WARMUP_STEPS"
ENV_STEPS = "TRACEKIT_STEPS"
ENV_SHAPES = "TRACEKIT_RECORD_SHAPES"
ENV_LAYOUT = "TRACEKIT_LAYOUT"  # a layout the plugin sets on vLLM's EngineArgs (tracekit sweep)

Mode = Literal["full", "nvtx", "nsys"]
RAW_TRACES = ".raw"  # under traces/: where vLLM's profiler writes before the wrapper renames
META = "meta"  # per-engine facts the plugin writes for the manifest


@dataclass(frozen=True)
class Settings:
    run_dir: Path
    # "nvtx": NVTX ranges and step stats only, no torch.profiler; "nsys": the same under
    # Nsight Systems, whose capture range the window drives (cudaProfilerStart/Stop)
    mode: Mode = "full"
    warmup_steps: int = 5  # engine steps skipped before the profiled window
    steps: int = 20  # engine steps in the profiled window
    record_shapes: bool = False
    # ``tracekit sweep``: a layout spec (``tp=2+pp=2``, see collectors.layout) the plugin sets
    # on vLLM's EngineArgs; None leaves the command's own layout alone
    layout: str | None = None

    @property
    def raw_trace_dir(self) -> Path:
        return self.run_dir / "traces" / RAW_TRACES

    def to_env(self) -> dict[str, str]:
        return {
            ENV_DIR: str(self.run_dir.resolve()),
            ENV_MODE: self.mode,
            ENV_WARMUP: str(self.warmup_steps),
            ENV_STEPS: str(self.steps),
            ENV_SHAPES: "1" if self.record_shapes else "0",
            ENV_LAYOUT: self.layout or "",  # always set: an inherited value must not leak in
        }


def from_env(env: Mapping[str, str] | None = None) -> Settings | None:
    """The capture settings, or None when no capture is running (the plugin stays inert)."""
    env = os.environ if env is None else env
    run_dir = env.get(ENV_DIR)
    if not run_dir:
        return None
    mode = env.get(ENV_MODE, "full")
    return Settings(
        run_dir=Path(run_dir),
        mode="nvtx" if mode == "nvtx" else "nsys" if mode == "nsys" else "full",
        warmup_steps=int(env.get(ENV_WARMUP, "5")),
        steps=int(env.get(ENV_STEPS, "20")),
        record_shapes=env.get(ENV_SHAPES) == "1",
        layout=env.get(ENV_LAYOUT) or None,
    )
