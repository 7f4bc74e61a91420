"""Device peaks for the roofline: a spec table for GPUs, a measured probe for CPUs.

GPU figures are vendor datasheet peaks: dense (no sparsity) BF16 tensor FLOP/s, HBM
bandwidth and capacity, and interconnect bandwidth **per direction** per GPU (NVLink /
Infinity Fabric aggregate divided by two, the figure NCCL's bus bandwidth is compared with).
A CPU has no datasheet tracekit can trust: ``tracekit.cpu_probe`` measures the GEMM paths the
engine runs, at capture in the run's own environment, and the manifest records it. Every
spec names its source.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from tracekit.errors import TracekitError

TB: Final = 1e12
GB: Final = 1e9
GIB: Final = 2**30


class DeviceSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One device's peaks. ``flops`` is dense BF16 (GPU) or the probed GEMM (CPU)."""

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


# --- the CPU ------------------------------------------------------------------------------


def this_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
