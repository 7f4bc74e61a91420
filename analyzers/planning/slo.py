"""Latency targets for ``tracekit plan --slo ttft=2s,tpot=50ms``.

Each layout is taken at the highest concurrency whose predicted TTFT and TPOT meet the
targets (TPOT, the round, grows with the batch: a bisection over sequences per replica, from
what the KV cache and ``max_num_seqs`` allow down to one); a layout that misses them even at
one sequence per replica is listed as infeasible with its figures there. The rest rank by
throughput per device, as without targets.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from analyzers.planning.plan import DEFAULT_COSTS, layouts, predict, ranked, setup
from tracekit.core.errors import TracekitError
from tracekit.core.hardware import DeviceSpec
from tracekit.core.model_config import ModelSpec
from tracekit.core.plan_gpu import PlanGpu
from tracekit.core.plan_result import Costs, LayoutPlan, Plan, Slo, Workload

_PART = re.compile(r"^(ttft|tpot)=([0-9]*\.?[0-9]+)(ms|s)$")


def parse(text: str) -> Slo:
    """``ttft=2s,tpot=50ms`` (either or both; s or ms)."""
    found: dict[str, float] = {}
    for part in text.replace(" ", "").lower().split(","):
        hit = _PART.match(part)
        if hit is None or hit[1] in found or float(hit[2]) <= 0:
            raise TracekitError(None, f"bad --slo {text!r}: use ttft=2s,tpot=50ms (s or ms, > 0)")
        found[hit[1]] = float(hit[2]) * (1e3 if hit[3] == "s" else 1.0)
    return Slo(found.get("ttft"), found.get("tpot"))


def plan_for(
    spec: ModelSpec,
    gpu: DeviceSpec | PlanGpu,
    gpus: int,
    work: Workload,
    slo: Slo,
    costs: Costs = DEFAULT_COSTS,
    **nodes_options: Any,
) -> Plan:
    """The plan of the layouts that meet ``slo``, each at its highest such concurrency
    (``nodes_options``: ``plan.setup``'s gpus_per_node, tp_across_nodes)."""
    dev, compute, c, nodes = setup(spec, gpu, costs, **nodes_options)
    rows = []
    for lay in layouts(gpus, bool(spec.config.experts)):
        full = predict(spec, dev, lay, work, c, nodes)
        if not full.feasible or slo.met(full.ttft_ms, full.tpot_ms):
            rows.append(full)
            continue
        at_one = predict(spec, dev, lay, _at(work, lay.dp), c, nodes)
        if not slo.met(at_one.ttft_ms, at_one.tpot_ms):
            rows.append(_missed(at_one, slo))
            continue
        lo, hi, best = 2, full.batch - 1, at_one
        while lo <= hi:
            mid = (lo + hi) // 2
            got = predict(spec, dev, lay, _at(work, mid * lay.dp), c, nodes)
            if slo.met(got.ttft_ms, got.tpot_ms):
                best, lo = got, mid + 1
            else:
                hi = mid - 1
        rows.append(best)
    result = ranked(spec, dev, gpus, work, c, rows, compute, nodes)
    note = f"latency targets {slo.describe()}: each layout at the highest concurrency meeting them"
    return msgspec.structs.replace(result, slo=slo, notes=[*result.notes, note])


def _at(work: Workload, concurrency: int) -> Workload:
    return msgspec.structs.replace(work, concurrency=concurrency)


def _missed(r: LayoutPlan, slo: Slo) -> LayoutPlan:
    return msgspec.structs.replace(
        r,
        feasible=False,
        reason=f"misses {slo.describe()} even at 1 sequence per replica "
        f"(TTFT {r.ttft_ms:,.0f} ms, TPOT {r.tpot_ms:,.1f} ms)",
    )
