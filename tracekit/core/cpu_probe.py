"""The CPU probe: what the engine's GEMMs and memory reach on this CPU, for the roofline.

A CPU has no datasheet tracekit can trust, and the figure depends on the GEMM path the
engine takes: vLLM's CPU linear layers call oneDNN (``_C::onednn_mm``) where they can create
its primitive, else ``torch.nn.functional.linear`` with the weight as stored ([out, in]).
On a CPU without avx512_bf16 / AMX, bf16 ``a @ b`` runs ~10× slower than either, and a
numpy float32 matmul ~150× faster than bf16 (``VLLM_CPU.md``, "CPUs differ"). So the probe
times those two paths in the run's dtype, at a layer's shapes (tokens 256–1024 × hidden
1024–4096, as many as its time budget allows), best of several calls, plus a large copy
(bytes read + written per second), all on torch's threads — the engine's, in a worker.
``choose_peak`` picks the peak from the timings (a pure function, tested on recorded
results); the probe records every timing, the winning path, the CPU's ISA flags and the
thread count. It needs torch, the environment vLLM runs in, and never falls back to numpy.

``tracekit capture`` runs it inside the vLLM worker (``collectors.peaks``) and records it in
the manifest; ``tracekit hw`` runs it here and caches it (``save`` / ``load``), for display:
analysis never reads that cache (``analyzers.read.run_facts.device_spec`` has the rule).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from tracekit.core.errors import TracekitError
from tracekit.core.hardware import DeviceSpec, this_cpu

#: the /proc/cpuinfo flags that decide which GEMM kernels a CPU can run
ISA_FLAGS: Final = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
ONEDNN: Final = "onednn_mm"
LINEAR: Final = "F.linear"
#: the paths vLLM's CPU linear layers take (vllm/model_executor/layers/utils.py,
#: ``dispatch_cpu_unquantized_gemm``: oneDNN where its primitive can be created, else F.linear)
ENGINE_PATHS: Final = (ONEDNN, LINEAR)
#: (tokens, in features, out features), smallest first: the budget stops before the largest
SHAPES: Final = ((256, 1024, 1024), (512, 2048, 2048), (1024, 4096, 4096))
NEEDS_TORCH: Final = (
    "the CPU probe needs torch, the environment vLLM runs in: run `tracekit hw` there "
    "(e.g. .venv-vllm/bin/tracekit hw); a numpy figure is not what the engine runs"
)


class Timing(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One GEMM path at one shape: the best of ``calls`` timed calls."""

    path: str  # ENGINE_PATHS, or another label in recorded results
    dtype: str  # torch dtype name: bfloat16, float16, float32
    tokens: int = 0  # M
    in_features: int = 0  # K
    out_features: int = 0  # N
    flops: float = 0.0  # FLOP/s, 2·M·K·N over the best call
    calls: int = 0
    error: str | None = None  # why the path could not run here


class CpuProbe(msgspec.Struct, frozen=True, kw_only=True):
    """What the probe measured: the peaks a CPU run's roofline uses, and how they were got."""

    cpu_model: str
    isa: list[str]  # the ISA_FLAGS this CPU has (/proc/cpuinfo)
    threads: int  # torch intra-op threads the probe ran on (a worker's: the engine's)
    dtype: str
    path: str  # the GEMM path whose timing is the peak (``choose_peak``)
    flops: float  # FLOP/s
    bandwidth: float  # bytes/s: large copy, read + written, best of several
    timings: list[Timing]
    copy_bytes: int
    measured_at: str  # ISO 8601, UTC
    where: str  # "tracekit hw", or the vLLM worker that ran it
    torch: str
    seconds: float  # how long the probe took

    def spec(self, origin: str) -> DeviceSpec:
        """The roofline's peaks; ``origin`` says where the probe was read from."""
        isa = " ".join(self.isa) or "no AVX2/AVX-512/AMX flags"
        return DeviceSpec(
            name=f"CPU {self.cpu_model}",
            flops=self.flops,
            bandwidth=self.bandwidth,
            source=f"{origin}: CPU probe by {self.where} at {self.measured_at}, {self.path} "
            f"{self.dtype} GEMM {self.flops / 1e9:,.1f} GFLOP/s, copy "
            f"{self.bandwidth / 1e9:,.1f} GB/s, {self.threads} thread(s); {isa}",
        )


class RecordedPeaks(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The manifest's ``peaks``: what capture recorded for the roofline, so that a run
    directory analyses the same on any machine."""

    device: Literal["cpu", "gpu"]
    cpu_probe: CpuProbe | None = None  # CPU: measured in the run's own environment
    gpus: list[str] = msgspec.field(default_factory=list)  # GPU: names; the spec table applies
    error: str | None = None  # why nothing was measured (the capture went on)


def choose_peak(timings: Sequence[Timing], dtype: str) -> Timing | None:
    """The peak GEMM figure for a run in ``dtype``: the fastest timing of an engine path
    (``ENGINE_PATHS``) in that dtype. A path that failed here (oneDNN on a CPU whose
    build cannot create its primitive), another dtype (float32 for a bf16 run) and any
    other path (``a @ b``, numpy) never stand in: they are not what the engine runs."""
    usable = [
        t
        for t in timings
        if t.path in ENGINE_PATHS and t.dtype == dtype and t.error is None and t.flops > 0
    ]
    return max(usable, key=lambda t: t.flops, default=None)


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The ISA_FLAGS in ``/proc/cpuinfo`` (or the text given), in ISA_FLAGS order."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
    return [f for f in ISA_FLAGS if f in flags]


#: ``report(label, result)``: a measurement starts (result None) or ends (its figure)
Report = Callable[[str, str | None], None]


def measure(
    dtype: str = "bfloat16",
    budget_s: float = 3.0,
    copy_bytes: int = 128 * 2**20,
    where: str = "tracekit hw",
    report: Report | None = None,
) -> CpuProbe:
    """Time the engine's GEMM paths in ``dtype`` and a large copy, within about
    ``budget_s`` seconds. Raises TracekitError without torch or when no path runs."""
    try:
        import torch
    except ImportError:
        raise TracekitError(None, NEEDS_TORCH) from None
    started = time.perf_counter()
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise TracekitError(None, f"unknown torch dtype {dtype!r}")
    say = report or (lambda _label, _result: None)
    gemm_budget = 0.85 * budget_s / len(ENGINE_PATHS)
    timings: list[Timing] = []
    with torch.inference_mode():
        for path in ENGINE_PATHS:
            timings += _time_path(torch, path, torch_dtype, dtype, gemm_budget, say)
        label = f"memory: {copy_bytes // 2**20} MiB copy"
        say(label, None)
        bandwidth = _copy_bandwidth(torch, copy_bytes, 0.15 * budget_s)
        say(label, f"{bandwidth / 1e9:,.1f} GB/s (read + write)")
    best = choose_peak(timings, dtype)
    if best is None:
        why = "; ".join(f"{t.path}: {t.error}" for t in timings if t.error) or "no timing"
        raise TracekitError(None, f"no GEMM path ran in {dtype} here ({why})")
    return CpuProbe(
        cpu_model=this_cpu(),
        isa=cpu_flags(),
        threads=torch.get_num_threads(),
        dtype=dtype,
        path=best.path,
        flops=best.flops,
        bandwidth=bandwidth,
        timings=timings,
        copy_bytes=copy_bytes,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        where=where,
        torch=str(torch.__version__),
        seconds=round(time.perf_counter() - started, 3),
    )


def _time_path(
    torch: Any, path: str, torch_dtype: Any, dtype: str, budget_s: float, say: Report
) -> list[Timing]:
    """One path over SHAPES, smallest first, while the budget allows another shape. The
    budget starts after the first warm-up (imports, thread pools, oneDNN's first primitive)."""
    out: list[Timing] = []
    deadline = float("inf")
    rate = 0.0
    for m, k, n in SHAPES:
        work = 2.0 * m * k * n
        if rate and time.perf_counter() + 3 * work / rate > deadline:
            break  # not even a warm-up and two calls fit
        label = f"{path} {dtype} {m}×{k} · [{n}, {k}]ᵀ"
        say(label, None)
        x = torch.randn(m, k).to(torch_dtype)
        w = torch.randn(n, k).to(torch_dtype)  # [out, in], as vLLM stores it
        try:
            call = _gemm(torch, path, x, w)
            call()  # warm-up: threads, caches, oneDNN's primitive
            deadline = min(deadline, time.perf_counter() + budget_s)
        except Exception as exc:  # this path cannot run here: record why
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            say(label, f"failed ({error})")
            return [*out, Timing(path=path, dtype=dtype, tokens=m, in_features=k,
                                 out_features=n, error=error)]  # fmt: skip
        best, calls = float("inf"), 0
        while calls < 2 or (calls < 8 and time.perf_counter() + best < deadline):
            begun = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - begun)
            calls += 1
        rate = max(rate, work / best)
        out.append(Timing(path=path, dtype=dtype, tokens=m, in_features=k, out_features=n,
                          flops=work / best, calls=calls))  # fmt: skip
        say(label, f"{work / best / 1e9:,.1f} GFLOP/s (best of {calls})")
    return out


def _gemm(torch: Any, path: str, x: Any, w: Any) -> Callable[[], object]:
    if path == LINEAR:
        linear = torch.nn.functional.linear
        return lambda: linear(x, w)
    from vllm import _custom_ops as ops  # vLLM's own CPU op, as its linear layers call it

    if not getattr(ops, "_supports_onednn", False):
        raise RuntimeError("this vLLM build has no oneDNN GEMM (create_onednn_mm_handler)")
    handler = ops.create_onednn_mm(w.t(), 32)
    return lambda: ops.onednn_mm(handler, x, None)


def _copy_bandwidth(torch: Any, size: int, budget_s: float) -> float:
    src = torch.ones(size // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # fault the pages in
    deadline = time.perf_counter() + budget_s
    best, calls = float("inf"), 0
    while calls < 3 or (calls < 10 and time.perf_counter() + best < deadline):
        begun = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - begun)
        calls += 1
    return 2 * size / best


# --- the `tracekit hw` cache (display only: analysis never reads it) -------------------------


def cache_path() -> Path:
    """``$TRACEKIT_HW_CACHE``, else ``$XDG_CACHE_HOME/tracekit/hw.json`` (~/.cache)."""
    explicit = os.environ.get("TRACEKIT_HW_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tracekit" / "hw.json"


def save(probe: CpuProbe, path: Path | None = None) -> Path:
    path = path or cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(probe), indent=2) + b"\n")
    return path


def load(path: Path | None = None) -> CpuProbe | None:
    """The cached probe, or None when there is none. A damaged cache is a domain error."""
    path = path or cache_path()
    if not path.is_file():
        return None
    try:
        return msgspec.json.decode(path.read_bytes(), type=CpuProbe)
    except (OSError, msgspec.DecodeError) as exc:
        raise TracekitError(
            path, f"unreadable CPU probe cache ({exc}); rerun `tracekit hw`"
        ) from None
