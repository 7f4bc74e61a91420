"""Device peaks for the roofline: a spec table for GPUs, a measured probe for CPUs.

GPU figures are vendor datasheet peaks: dense (no sparsity) BF16 tensor FLOP/s, HBM
bandwidth and capacity, and interconnect bandwidth **per direction** per GPU (NVLink /
Infinity Fabric aggregate divided by two, the figure NCCL's bus bandwidth is compared with).
A CPU has no datasheet tracekit can trust: ``tracekit.core.cpu_probe`` measures the GEMM paths the
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

from tracekit.core.errors import TracekitError

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
class Signature:
    """What a device's runtime properties say about it, when its name says nothing.

    ``compute``: (major, minor) as Kineto's ``deviceProperties`` writes them (CUDA compute
    capability; on ROCm the gfx IP version: gfx942 is 9.4, gfx90a 9.0). ``units``: SMs
    (NVIDIA) or compute units (AMD) of one device as the runtime sees it (one GCD of an
    MI250). ``memory_gib``: its nominal memory. ``warp``: 32 (NVIDIA) or 64 (AMD wavefront).
    """

    arch: str  # how the part's architecture is called: "gfx942", "sm_90"
    compute: tuple[int, int]
    units: int
    memory_gib: float
    warp: int


@dataclass(frozen=True)
class _Row:
    pattern: str  # regex on the device name as the trace reports it
    name: str
    flops: float
    bandwidth: float
    memory_bytes: float
    interconnect: float | None  # None: no sourced per-device figure
    source: str
    signature: Signature | None = None  # None: not identified from properties


def _amd(arch: str, minor: int, units: int, gib: float) -> Signature:
    return Signature(arch, (9, minor), units, gib, 64)


def _nv(major: int, minor: int, units: int, gib: float) -> Signature:
    return Signature(f"sm_{major}{minor}", (major, minor), units, gib, 32)


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
# AMD Instinct MI325X datasheet (2024): BF16 1,307.4 TFLOPS dense, HBM3E 6 TB/s, 256 GB,
#   Infinity Fabric 7 links x 128 GB/s (448 GB/s per direction, as the MI300X).
# AMD Instinct MI300A APU datasheet (2023): BF16 980.6 TFLOPS dense, HBM3 5.3 TB/s,
#   128 GB unified; no per-device Infinity Fabric figure taken (links go to CPUs too).
# AMD Instinct MI250X / MI250 datasheets (2021): per OAM module of two GCDs, BF16 383.0 /
#   362.1 TFLOPS, HBM2e 3.2 TB/s, 128 GB. The runtime sees each GCD as one device, so a
#   row holds half (ROCm docs, "MI250 microarchitecture": 1.6 TB/s per GCD); the links
#   per GCD depend on the board, so no interconnect figure.
# AMD Instinct MI210 datasheet (2022): BF16 181.0 TFLOPS, HBM2e 1.6 TB/s, 64 GB,
#   Infinity Fabric 3 links x 100 GB/s (150 GB/s per direction).
# Signatures: AMD from ROCm docs, "AMD GPU specifications" (LLVM target, CUs, VRAM GiB,
#   wavefront, GFXIP major/minor); NVIDIA SM counts from the A100 and H100 architecture
#   white papers (A100 108, H100 SXM5 132, H100 PCIe 114; H100 NVL and H200 are the
#   132-SM GH100), compute capability from the CUDA programming guide.
_TABLE: Final[tuple[_Row, ...]] = (
    _Row(
        r"H200",
        "H200 SXM",
        989e12,
        4.8 * TB,
        141 * GB,
        450 * GB,
        "NVIDIA H200 datasheet",
        _nv(9, 0, 132, 141),
    ),
    _Row(
        r"H100.*PCIe",
        "H100 PCIe",
        756e12,
        2.0 * TB,
        80 * GB,
        300 * GB,
        "NVIDIA H100 datasheet",
        _nv(9, 0, 114, 80),
    ),
    _Row(
        r"H100.*NVL",
        "H100 NVL",
        835e12,
        3.9 * TB,
        94 * GB,
        300 * GB,
        "NVIDIA H100 datasheet",
        _nv(9, 0, 132, 94),
    ),
    _Row(
        r"H100",
        "H100 SXM",
        989e12,
        3.35 * TB,
        80 * GB,
        450 * GB,
        "NVIDIA H100 datasheet",
        _nv(9, 0, 132, 80),
    ),
    _Row(r"B200", "B200", 2.25e15, 8.0 * TB, 180 * GB, 900 * GB, "NVIDIA HGX B200 specs"),
    _Row(
        r"A100.*40GB|A100-PG509|A100-PCIE-40",
        "A100 40GB",
        312e12,
        1.555 * TB,
        40 * GB,
        300 * GB,
        "NVIDIA A100 datasheet",
        _nv(8, 0, 108, 40),
    ),
    _Row(
        r"A100",
        "A100 80GB",
        312e12,
        2.039 * TB,
        80 * GB,
        300 * GB,
        "NVIDIA A100 datasheet",
        _nv(8, 0, 108, 80),
    ),
    _Row(
        r"MI300X",
        "MI300X",
        1307.4e12,
        5.3 * TB,
        192 * GB,
        448 * GB,
        "AMD MI300X datasheet",
        _amd("gfx942", 4, 304, 192),
    ),
    _Row(
        r"MI325X",
        "MI325X",
        1307.4e12,
        6.0 * TB,
        256 * GB,
        448 * GB,
        "AMD MI325X datasheet",
        _amd("gfx942", 4, 304, 256),
    ),
    _Row(
        r"MI300A",
        "MI300A",
        980.6e12,
        5.3 * TB,
        128 * GB,
        None,
        "AMD MI300A datasheet",
        _amd("gfx942", 4, 228, 128),
    ),
    _Row(
        r"MI250X",
        "MI250X (one GCD)",
        191.5e12,
        1.6 * TB,
        64 * GB,
        None,
        "AMD MI250X datasheet, halved per GCD",
        _amd("gfx90a", 0, 110, 64),
    ),
    _Row(
        r"MI250",
        "MI250 (one GCD)",
        181.05e12,
        1.6 * TB,
        64 * GB,
        None,
        "AMD MI250 datasheet, halved per GCD",
        _amd("gfx90a", 0, 104, 64),
    ),
    _Row(
        r"MI210",
        "MI210",
        181e12,
        1.6 * TB,
        64 * GB,
        150 * GB,
        "AMD MI210 datasheet",
        _amd("gfx90a", 0, 104, 64),
    ),
)

#: Parts not in the table whose properties read as a row's: identifying a device as that
#: row from its properties alone would be a guess (NVIDIA H800 / A800 export parts: the
#: H100 SXM's and A100's SMs and memory with other links; the H200 NVL: the H200 SXM's
#: SMs and memory at 600 W).
LOOKALIKES: Final[tuple[tuple[str, Signature], ...]] = (
    ("H200 NVL", _nv(9, 0, 132, 141)),
    ("H800", _nv(9, 0, 132, 80)),
    ("A800 80GB", _nv(8, 0, 108, 80)),
    ("A800 40GB", _nv(8, 0, 108, 40)),
)

#: The table's names, for docs and tests.
GPU_NAMES: Final[tuple[str, ...]] = tuple(r.name for r in _TABLE)

#: (row name, signature) of every row its device properties identify.
SIGNATURES: Final[tuple[tuple[str, Signature], ...]] = tuple(
    (r.name, r.signature) for r in _TABLE if r.signature is not None
)


def gpu_spec(device_name: str) -> DeviceSpec | None:
    """The table row whose pattern the trace's device name matches, or None."""
    for row in _TABLE:
        if re.search(row.pattern, device_name, re.IGNORECASE):
            return _spec(row, "")
    return None


def identified_spec(name: str, how: str) -> DeviceSpec:
    """The row ``name`` (a ``GPU_NAMES`` entry), its source saying ``how`` it was chosen."""
    row = next(r for r in _TABLE if r.name == name)
    return _spec(row, f"; {how}")


def _spec(row: _Row, how: str) -> DeviceSpec:
    return DeviceSpec(
        name=row.name,
        flops=row.flops,
        bandwidth=row.bandwidth,
        memory_bytes=row.memory_bytes,
        interconnect=row.interconnect,
        source=f"spec table: {row.source} (dense BF16){how}",
    )


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
