"""Device peaks for the roofline: a spec table for GPUs, a measured probe for CPUs.

GPU figures are vendor datasheet peaks: dense (no sparsity) BF16 tensor FLOP/s, HBM
bandwidth and capacity, and interconnect bandwidth **per direction** per GPU (NVLink /
Infinity Fabric aggregate divided by two, the figure NCCL's bus bandwidth is compared with).
A CPU has no datasheet tracekit can trust, so ``tracekit hw`` measures this machine (matmul
FLOP/s: BF16 through torch where installed, else float32 through numpy; large-copy
bandwidth) and caches the result; CPU runs use the cache when its CPU model matches the
run's. Every spec names its source.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from tracekit.errors import TracekitError

TB: Final = 1e12
GB: Final = 1e9
GIB: Final = 2**30


class DeviceSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One device's peaks. ``flops`` is dense BF16 (GPU) or the measured matmul (CPU)."""

    name: str
    flops: float  # FLOP/s
    bandwidth: float  # memory bytes/s (HBM, or DRAM for a CPU)
    memory_bytes: float | None = None
    interconnect: float | None = None  # bytes/s per direction per device
    source: str

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (FLOP/byte) above which a workload is compute-bound."""
        return self.flops / self.bandwidth


@dataclass(frozen=True)
class _Row:
    pattern: str  # regex on the device name as the trace reports it
    name: str
    flops: float
    bandwidth: float
    memory_bytes: float
    interconnect: float
    source: str


# Sources: NVIDIA A100 Tensor Core GPU datasheet (2021): BF16 312 TFLOPS dense, 80GB SXM
#   2,039 GB/s, 40GB 1,555 GB/s, NVLink 600 GB/s (300 per direction).
# NVIDIA H100 Tensor Core GPU datasheet (2023): SXM BF16 989 TFLOPS dense (1,979 sparse),
#   3.35 TB/s, 80 GB, NVLink 900 GB/s; PCIe 756 TFLOPS, 2 TB/s, NVLink bridge 600 GB/s;
#   NVL 835 TFLOPS, 3.9 TB/s, 94 GB.
# NVIDIA H200 Tensor Core GPU datasheet (2024): SXM BF16 989 TFLOPS dense, 4.8 TB/s,
#   141 GB, NVLink 900 GB/s.
# NVIDIA HGX B200 specifications (2024): per GPU BF16 2.25 PFLOPS dense (4.5 sparse),
#   HBM3e 8 TB/s, 180 GB, NVLink 5 1.8 TB/s.
# AMD Instinct MI300X datasheet (2023): BF16 1,307.4 TFLOPS dense, HBM3 5.3 TB/s,
#   192 GB, Infinity Fabric 7 links x 128 GB/s = 896 GB/s (448 per direction).
_TABLE: Final[tuple[_Row, ...]] = (
    _Row(r"H200", "H200 SXM", 989e12, 4.8 * TB, 141 * GB, 450 * GB, "NVIDIA H200 datasheet"),
    _Row(r"H100.*PCIe", "H100 PCIe", 756e12, 2.0 * TB, 80 * GB, 300 * GB, "NVIDIA H100 datasheet"),
    _Row(r"H100.*NVL", "H100 NVL", 835e12, 3.9 * TB, 94 * GB, 300 * GB, "NVIDIA H100 datasheet"),
    _Row(r"H100", "H100 SXM", 989e12, 3.35 * TB, 80 * GB, 450 * GB, "NVIDIA H100 datasheet"),
    _Row(r"B200", "B200", 2.25e15, 8.0 * TB, 180 * GB, 900 * GB, "NVIDIA HGX B200 specs"),
    _Row(
        r"A100.*40GB|A100-PG509|A100-PCIE-40",
        "A100 40GB",
        312e12,
        1.555 * TB,
        40 * GB,
        300 * GB,
        "NVIDIA A100 datasheet",
    ),
    _Row(r"A100", "A100 80GB", 312e12, 2.039 * TB, 80 * GB, 300 * GB, "NVIDIA A100 datasheet"),
    _Row(r"MI300X", "MI300X", 1307.4e12, 5.3 * TB, 192 * GB, 448 * GB, "AMD MI300X datasheet"),
)

#: The table's names, for docs and tests.
GPU_NAMES: Final[tuple[str, ...]] = tuple(r.name for r in _TABLE)


def gpu_spec(device_name: str) -> DeviceSpec | None:
    """The table row whose pattern the trace's device name matches, or None."""
    for row in _TABLE:
        if re.search(row.pattern, device_name, re.IGNORECASE):
            return DeviceSpec(
                name=row.name,
                flops=row.flops,
                bandwidth=row.bandwidth,
                memory_bytes=row.memory_bytes,
                interconnect=row.interconnect,
                source=f"spec table: {row.source} (dense BF16)",
            )
    return None


def spec_by_name(name: str) -> DeviceSpec:
    spec = gpu_spec(name)
    if spec is None:
        raise TracekitError(None, f"no device named {name!r} in the spec table {GPU_NAMES}")
    return spec


# --- the CPU probe ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    cpu_model: str
    cores: int | None
    flops: float  # matmul (see method), best of several
    bandwidth: float  # large copy: bytes read + written per second, best of several
    measured_at: str
    method: str

    def spec(self) -> DeviceSpec:
        return DeviceSpec(
            name=f"CPU {self.cpu_model}",
            flops=self.flops,
            bandwidth=self.bandwidth,
            source=f"measured by `tracekit hw` at {self.measured_at} ({self.method})",
        )


def cache_path() -> Path:
    """``$TRACEKIT_HW_CACHE``, else ``$XDG_CACHE_HOME/tracekit/hw.json`` (~/.cache)."""
    explicit = os.environ.get("TRACEKIT_HW_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tracekit" / "hw.json"


def this_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(matrix: int = 1024, copy_bytes: int = 256 * 2**20, repeats: int = 5) -> Probe:
    """Best-of-``repeats`` matmul FLOP/s and large-copy bandwidth on this machine.

    The matmul is BF16 through torch where torch is installed (what vLLM's CPU backend
    runs), else float32 through numpy; the probe's ``method`` says which.
    """
    import numpy as np

    src = np.ones(copy_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    matmul, label = _matmul(matrix)
    matmul()  # warm up threads and caches
    best_mm = best_copy = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        matmul()
        best_mm = min(best_mm, time.perf_counter() - started)
        started = time.perf_counter()
        np.copyto(dst, src)
        best_copy = min(best_copy, time.perf_counter() - started)
    return Probe(
        cpu_model=this_cpu(),
        cores=os.cpu_count(),
        flops=2 * matrix**3 / best_mm,
        bandwidth=2 * src.nbytes / best_copy,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        method=f"{label} {matrix}^3 matmul; {copy_bytes // 2**20} MiB numpy copy, "
        f"read + write; best of {repeats}",
    )


def _matmul(n: int) -> tuple[Callable[[], object], str]:
    try:
        import torch
    except ImportError:
        import numpy as np

        rng = np.random.default_rng(0)
        a = rng.random((n, n), dtype=np.float32)
        b = rng.random((n, n), dtype=np.float32)
        return (lambda: a @ b), "numpy float32"
    x = torch.randn(n, n, dtype=torch.bfloat16)
    y = torch.randn(n, n, dtype=torch.bfloat16)
    return (lambda: x @ y), "torch bfloat16"


def save(probe: Probe, path: Path | None = None) -> Path:
    path = path or cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(probe), indent=2) + "\n")
    return path


def load(path: Path | None = None) -> Probe | None:
    """The cached probe, or None when there is none. A damaged cache is a domain error."""
    path = path or cache_path()
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return Probe(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise TracekitError(
            path, f"unreadable hardware cache ({exc}); rerun `tracekit hw`"
        ) from None


def cpu_spec(cpu_model: str | None) -> tuple[DeviceSpec | None, str]:
    """The cached probe for ``cpu_model`` (the run's CPU), and why there is none if not."""
    probe = load()
    if probe is None:
        return None, f"no measured CPU peaks: run `tracekit hw` (cache {cache_path()})"
    if cpu_model and probe.cpu_model != cpu_model:
        return None, (
            f"the cached CPU probe is for {probe.cpu_model!r}, the run used {cpu_model!r}: "
            "run `tracekit hw` on the capture machine"
        )
    return probe.spec(), ""
