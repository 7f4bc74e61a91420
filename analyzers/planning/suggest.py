"""``tracekit plan``'s one call: the plan (under latency targets, if any) and, when no layout
fits, what would: FP8 weights, an FP8 KV cache, more GPUs, a shorter context; each tried
with the same model and named with the layout that then fits and its throughput."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from analyzers.planning import slo as targets
from analyzers.planning.plan import plan
from analyzers.planning.quantization import with_precision
from tracekit.core.hardware import DeviceSpec
from tracekit.core.model_config import ModelSpec
from tracekit.core.plan_gpu import PlanGpu
from tracekit.core.plan_result import Plan, Slo, Workload
from tracekit.core.precision import SIXTEEN_BIT

MORE_GPUS = (2, 4, 8)  # multiples of --gpus tried


def planned(
    spec: ModelSpec,
    gpu: DeviceSpec | PlanGpu,
    gpus: int,
    work: Workload,
    slo: Slo | None = None,
    **options: Any,
) -> Plan:
    """The plan (``options``: ``plan.plan``'s costs, gpus_per_node, tp_across_nodes); with
    ``suggestions`` when nothing fits (or meets ``slo``)."""

    def run(s: ModelSpec = spec, n: int = gpus, w: Workload = work) -> Plan:
        if slo is None:
            return plan(s, gpu, n, w, **options)
        return targets.plan_for(s, gpu, n, w, slo, **options)

    result = run()
    if result.best is not None:
        return result
    return msgspec.structs.replace(result, suggestions=_what_fits(spec, gpus, work, run))


def _fits(p: Plan, what: str) -> str | None:
    best = p.best
    if best is None:
        return None
    return f"{what}: {best.label} fits, {best.per_device:,.0f} tok/s per GPU"


def _what_fits(spec: ModelSpec, gpus: int, work: Workload, run: Callable[..., Plan]) -> list[str]:
    out = []
    if spec.weights in SIXTEEN_BIT:
        out.append(_fits(run(s=with_precision(spec, weights="fp8")), "FP8 weights (--dtype fp8)"))
    if spec.kv in SIXTEEN_BIT:
        kv8 = with_precision(spec, kv="fp8")
        out.append(_fits(run(s=kv8), "an FP8 KV cache (--kv-dtype fp8)"))
    for k in MORE_GPUS:
        hit = _fits(run(n=gpus * k), f"{gpus * k} GPUs (--gpus {gpus * k})")
        if hit:
            out.append(hit)
            break
    lo, hi, longest = 1, work.output - 1, None
    while lo <= hi:  # the longest output (same prompt) that fits
        mid = (lo + hi) // 2
        if run(w=msgspec.structs.replace(work, output=mid)).best is not None:
            longest, lo = mid, mid + 1
        else:
            hi = mid - 1
    if longest is not None:
        short = msgspec.structs.replace(work, name=f"{work.prompt}:{longest}", output=longest)
        out.append(_fits(run(w=short), f"a shorter context (--workload {work.prompt}:{longest})"))
    found = [x for x in out if x]
    return found or [f"none of FP8, up to {gpus * MORE_GPUS[-1]} GPUs or a shorter output fits"]
