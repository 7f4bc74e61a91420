"""The peaks a run's roofline uses, recorded at capture (DESIGN.md, "Reproducible").

In the vLLM worker of global rank 0 (DP replica 0), once, right after the worker has loaded
and warmed up its model — before the engine's first step, so outside the profiled window:

* on a CPU, ``tracekit.core.cpu_probe.measure`` in the model's dtype, on the worker's own threads
  and in the run's own environment (vLLM build, torch, oneDNN), a few seconds;
* on a GPU, the device names (the spec table applies at analysis).

It writes ``meta/peaks.json``; capture's finish step puts it in the manifest as ``peaks``
(``tracekit.core.cpu_probe.RecordedPeaks``). A probe that fails is recorded with its reason and
never fails the run; a run without the record says so in the manifest.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Literal

import msgspec

from collectors.settings import META, Settings
from tracekit.core.cpu_probe import RecordedPeaks, measure

log = logging.getLogger(__name__)
PEAKS_FILE = "peaks.json"
BUDGET_S = 2.5  # GEMM paths and copy, on top of one small warm-up each
_DONE: list[bool] = []  # once per process
#: worker classes whose ``compile_or_warm_up_model`` ends a worker's start-up
WORKER_CLASSES = (
    ("vllm.v1.worker.gpu_worker", "Worker"),
    ("vllm.v1.worker.cpu_worker", "CPUWorker"),
)


def install(settings: Settings) -> None:
    """Wrap each worker class's ``compile_or_warm_up_model`` (CPUWorker overrides it)."""
    import importlib

    for module, name in WORKER_CLASSES:
        try:
            cls: Any = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:  # not in this vLLM build
            log.debug("tracekit: no %s.%s (%s)", module, name, exc)
            continue
        original = vars(cls).get("compile_or_warm_up_model")
        if original is None or getattr(original, "__tracekit_peaks__", False):
            continue
        cls.compile_or_warm_up_model = _after(original, settings)


def _after(original: Any, settings: Settings) -> Any:
    @functools.wraps(original)
    def compile_or_warm_up_model(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if not _DONE and is_first_rank(self):
            _DONE.append(True)
            record(self, settings.run_dir / META / PEAKS_FILE)
        return result

    compile_or_warm_up_model.__tracekit_peaks__ = True  # type: ignore[attr-defined]
    return compile_or_warm_up_model


def is_first_rank(worker: Any) -> bool:
    """Global rank 0 of DP replica 0 (replicas run as engines of their own, each rank 0)."""
    par = getattr(worker, "parallel_config", None)
    index = getattr(par, "data_parallel_index", None)
    if index is None:
        index = getattr(par, "data_parallel_rank", 0)
    return getattr(worker, "rank", 0) == 0 and not index


def record(worker: Any, path: Path) -> None:
    """Measure (CPU) or name (GPU) this worker's device into ``path``; never raises."""
    try:
        peaks = _peaks(worker)
    except Exception as exc:  # the run goes on; the manifest says why there are no peaks
        log.warning("tracekit: CPU probe failed: %s: %s", type(exc).__name__, exc)
        peaks = RecordedPeaks(device="cpu", error=f"probe failed: {type(exc).__name__}: {exc}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(msgspec.json.encode(peaks))
        tmp.replace(path)
    except OSError as exc:
        log.warning("tracekit: could not write %s: %s", path, exc)


def _peaks(worker: Any) -> RecordedPeaks:
    import torch

    device = str(getattr(getattr(worker, "device", None), "type", "cpu"))
    if device == "cuda" and torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return RecordedPeaks(device="gpu", gpus=names)
    if device != "cpu":
        return RecordedPeaks(device="gpu", error=f"device type {device!r}: not probed")
    dtype = str(getattr(worker.model_config, "dtype", "torch.bfloat16")).removeprefix("torch.")
    probe = measure(dtype, budget_s=BUDGET_S, where="the vLLM worker (rank 0, before the window)")
    return RecordedPeaks(device="cpu", cpu_probe=probe)


def read(run: Path, engines: list[dict[str, Any]]) -> tuple[RecordedPeaks | None, str | None]:
    """What the worker recorded, for the manifest (and a note when it recorded nothing)."""
    path = run / META / PEAKS_FILE
    device: Literal["cpu", "gpu"] = (
        "gpu" if any(e.get("device") == "cuda" for e in engines) else "cpu"
    )
    if not path.is_file():
        if not engines:
            return None, None  # no vLLM engine ran: nothing to probe
        why = "the vLLM worker recorded no peaks (its probe hook did not run; logs/stderr.log)"
        return RecordedPeaks(device=device, error=why), f"no peaks recorded: {why}"
    try:
        return msgspec.json.decode(path.read_bytes(), type=RecordedPeaks), None
    except (OSError, msgspec.DecodeError) as exc:
        why = f"unreadable {META}/{PEAKS_FILE} ({exc})"
        return RecordedPeaks(device=device, error=why), f"no peaks recorded: {why}"
