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
    flops: float  # dense BF16
    bandwidth: float
    memory_bytes: float
    interconnect: float | None  # None: no sourced per-device figure
    source: str
    signature: Signature | None = None  # None: not identified from properties
    # dense FLOP/s of the other precisions its tensor cores run (``tracekit.core.precision``):
    # FP16 at the BF16 rate unless stated; a precision left out is not native on the part
    fp8: float | None = None
    int8: float | None = None
    node: int = 8  # GPUs on one NVLink / Infinity Fabric domain (an HGX / OAM board)

    def peaks(self) -> dict[str, float]:
        out = {"bf16": self.flops, "fp16": self.flops, "fp8": self.fp8, "int8": self.int8}
        return {k: v for k, v in out.items() if v}


def _amd(arch: str, minor: int, units: int, gib: float) -> Signature:
    return Signature(arch, (9, minor), units, gib, 64)


def _nv(major: int, minor: int, units: int, gib: float) -> Signature:
    return Signature(f"sm_{major}{minor}", (major, minor), units, gib, 32)


# Sources (dense, i.e. without 2:4 sparsity: datasheets quote FP8 / INT8 "with sparsity" at 2×):
# NVIDIA A100 Tensor Core GPU datasheet (2021): BF16 312 TFLOPS dense, INT8 624 TOPS, no FP8;
#   80GB SXM 2,039 GB/s, 40GB 1,555 GB/s, NVLink 600 GB/s (300 per direction).
# NVIDIA H100 Tensor Core GPU datasheet (2023): SXM BF16 989 TFLOPS dense (1,979 sparse),
#   FP8 / INT8 1,979 dense, 3.35 TB/s, 80 GB, NVLink 900 GB/s; PCIe 756 TFLOPS (FP8 1,513),
#   2 TB/s, NVLink bridge 600 GB/s; NVL 835 TFLOPS (FP8 1,671), 3.9 TB/s, 94 GB.
# NVIDIA H200 Tensor Core GPU datasheet (2024): SXM BF16 989 TFLOPS dense, FP8 / INT8 1,979,
#   4.8 TB/s, 141 GB, NVLink 900 GB/s.
# NVIDIA H20 (China export part; NVIDIA partner spec sheet, 2024): BF16 148 TFLOPS, FP8 / INT8
#   296, HBM3 96 GB at 4.0 TB/s, NVLink 900 GB/s.
# NVIDIA HGX B200 specifications (2024): per GPU BF16 2.25 PFLOPS dense (4.5 sparse), FP8 /
#   INT8 4.5 dense, HBM3e 8 TB/s, 180 GB, NVLink 5 1.8 TB/s.
# NVIDIA GB200 NVL72 specifications (2024): per GB200 superchip (two GPUs) BF16 10 PFLOPS
#   sparse, FP8 / INT8 20 sparse, up to 372 GB HBM3e at 16 TB/s; NVLink 5 1.8 TB/s per GPU, 72
#   GPUs in one NVLink domain: per GPU BF16 2.5 PF dense, FP8 5 dense, 186 GB, 8 TB/s.
# NVIDIA HGX B300 specifications (2025): 8 GPUs BF16 36 PFLOPS sparse, FP8 72 sparse, INT8 2
#   POPS (not a native path any more), 2.3 TB HBM3e, 8 TB/s and NVLink 5 1.8 TB/s per GPU:
#   per GPU BF16 2.25 PF dense, FP8 4.5 dense, 288 GB.
# NVIDIA L40S datasheet (2023): BF16 362 TFLOPS dense (733 sparse), FP8 / INT8 733 dense,
#   48 GB GDDR6 at 864 GB/s, PCIe Gen4 x16 (64 GB/s, 32 per direction), no NVLink.
# NVIDIA L4 datasheet (2023): BF16 121 TFLOPS dense (242 sparse), FP8 / INT8 242.5 dense,
#   24 GB GDDR6 at 300 GB/s, PCIe Gen4 x16 (32 GB/s per direction), no NVLink.
# AMD Instinct MI300X datasheet (2023): BF16 1,307.4 TFLOPS dense, FP8 / INT8 2,614.9, HBM3
#   5.3 TB/s, 192 GB, Infinity Fabric 7 links x 128 GB/s = 896 GB/s (448 per direction).
# AMD Instinct MI325X datasheet (2024): BF16 1,307.4 TFLOPS dense, FP8 / INT8 2,614.9, HBM3E
#   6 TB/s, 256 GB, Infinity Fabric 7 links x 128 GB/s (448 GB/s per direction).
# AMD Instinct MI355X datasheet (2025): BF16 2.5 PFLOPS dense, FP8 / INT8 5.0 dense, HBM3E
#   288 GB at 8 TB/s, Infinity Fabric 7 links x 153.6 GB/s = 1,075 GB/s (537.6 per direction).
# AMD Instinct MI300A APU datasheet (2023): BF16 980.6 TFLOPS dense, FP8 / INT8 1,961.2, HBM3
#   5.3 TB/s, 128 GB unified; no per-device Infinity Fabric figure taken (links go to CPUs too).
# AMD Instinct MI250X / MI250 datasheets (2021): per OAM module of two GCDs, BF16 383.0 /
#   362.1 TFLOPS (INT8 at the same rate, no FP8), HBM2e 3.2 TB/s, 128 GB. The runtime sees
#   each GCD as one device, so a row holds half (ROCm docs, "MI250 microarchitecture": 1.6
#   TB/s per GCD); the links per GCD depend on the board, so no interconnect figure.
# AMD Instinct MI210 datasheet (2022): BF16 181.0 TFLOPS, INT8 181.0 TOPS, HBM2e 1.6 TB/s,
#   64 GB, Infinity Fabric 3 links x 100 GB/s (150 GB/s per direction).
# Signatures: AMD from ROCm docs, "AMD GPU specifications" (LLVM target, CUs, VRAM GiB,
#   wavefront, GFXIP major/minor); NVIDIA SM counts from the A100 and H100 architecture
#   white papers (A100 108, H100 SXM5 132, H100 PCIe 114; H100 NVL and H200 are the
#   132-SM GH100), compute capability from the CUDA programming guide.
_TABLE: Final[tuple[_Row, ...]] = (
    _Row(r"H200", "H200 SXM", 989e12, 4.8 * TB, 141 * GB, 450 * GB, "NVIDIA H200 datasheet",
         _nv(9, 0, 132, 141), fp8=1979e12, int8=1979e12),
    _Row(r"H100.*PCIe", "H100 PCIe", 756e12, 2.0 * TB, 80 * GB, 300 * GB,
         "NVIDIA H100 datasheet", _nv(9, 0, 114, 80), fp8=1513e12, int8=1513e12),
    _Row(r"H100.*NVL", "H100 NVL", 835e12, 3.9 * TB, 94 * GB, 300 * GB, "NVIDIA H100 datasheet",
         _nv(9, 0, 132, 94), fp8=1671e12, int8=1671e12),
    _Row(r"H100", "H100 SXM", 989e12, 3.35 * TB, 80 * GB, 450 * GB, "NVIDIA H100 datasheet",
         _nv(9, 0, 132, 80), fp8=1979e12, int8=1979e12),
    _Row(r"H20(?!\d)", "H20", 148e12, 4.0 * TB, 96 * GB, 450 * GB, "NVIDIA H20 spec sheet",
         fp8=296e12, int8=296e12),
    _Row(r"GB200", "GB200", 2.5e15, 8.0 * TB, 186 * GB, 900 * GB, "NVIDIA GB200 NVL72 specs",
         fp8=5e15, int8=5e15, node=72),
    _Row(r"B200", "B200", 2.25e15, 8.0 * TB, 180 * GB, 900 * GB, "NVIDIA HGX B200 specs",
         fp8=4.5e15, int8=4.5e15),
    _Row(r"B300", "B300", 2.25e15, 8.0 * TB, 288 * GB, 900 * GB, "NVIDIA HGX B300 specs",
         fp8=4.5e15),
    _Row(r"L40S", "L40S", 362e12, 0.864 * TB, 48 * GB, 32 * GB, "NVIDIA L40S datasheet",
         fp8=733e12, int8=733e12),
    _Row(r"\bL4\b", "L4", 121e12, 0.3 * TB, 24 * GB, 32 * GB, "NVIDIA L4 datasheet",
         fp8=242.5e12, int8=242.5e12),
    _Row(r"A100.*40GB|A100-PG509|A100-PCIE-40", "A100 40GB", 312e12, 1.555 * TB, 40 * GB,
         300 * GB, "NVIDIA A100 datasheet", _nv(8, 0, 108, 40), int8=624e12),
    _Row(r"A100", "A100 80GB", 312e12, 2.039 * TB, 80 * GB, 300 * GB, "NVIDIA A100 datasheet",
         _nv(8, 0, 108, 80), int8=624e12),
    _Row(r"MI300X", "MI300X", 1307.4e12, 5.3 * TB, 192 * GB, 448 * GB, "AMD MI300X datasheet",
         _amd("gfx942", 4, 304, 192), fp8=2614.9e12, int8=2614.9e12),
    _Row(r"MI325X", "MI325X", 1307.4e12, 6.0 * TB, 256 * GB, 448 * GB, "AMD MI325X datasheet",
         _amd("gfx942", 4, 304, 256), fp8=2614.9e12, int8=2614.9e12),
    _Row(r"MI355X", "MI355X", 2.5e15, 8.0 * TB, 288 * GB, 537.6 * GB, "AMD MI355X datasheet",
         fp8=5e15, int8=5e15),
    _Row(r"MI300A", "MI300A", 980.6e12, 5.3 * TB, 128 * GB, None, "AMD MI300A datasheet",
         _amd("gfx942", 4, 228, 128), fp8=1961.2e12, int8=1961.2e12),
    _Row(r"MI250X", "MI250X (one GCD)", 191.5e12, 1.6 * TB, 64 * GB, None,
         "AMD MI250X datasheet, halved per GCD", _amd("gfx90a", 0, 110, 64), int8=191.5e12),
    _Row(r"MI250", "MI250 (one GCD)", 181.05e12, 1.6 * TB, 64 * GB, None,
         "AMD MI250 datasheet, halved per GCD", _amd("gfx90a", 0, 104, 64), int8=181.05e12),
    _Row(r"MI210", "MI210", 181e12, 1.6 * TB, 64 * GB, 150 * GB, "AMD MI210 datasheet",
         _amd("gfx90a", 0, 104, 64), int8=181e12),
)  # fmt: skip

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


def precision_peaks(name: str) -> tuple[dict[str, float], int] | None:
    """A table row's dense FLOP/s by precision and its GPUs per node, by the row's name
    (``DeviceSpec.name``); None for a device the table does not hold."""
    row = next((r for r in _TABLE if r.name == name), None)
    return None if row is None else (row.peaks(), row.node)


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
