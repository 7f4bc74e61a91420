"""Calibration: fit the plan's cost-model factors (``plan.Costs``) to captured runs.

``calibrate(paths)`` analyses each tracekit run directory (``analyzers.planning.run_measures``;
it needs a model in the manifest, device peaks and ``steps/``) and sets what the run
achieved against what the roofline stage's cost model says, per bucket:

* **kernels**: the modelled FLOPs and bytes of the profiled steps (``RankRoofline.kinds``)
  at the device's peaks over the compute and HBM time measured in them (``decided_ns``,
  split by the rank's compute : HBM buckets), pooled over ranks and runs:
  ``flops_efficiency``, ``hbm_efficiency`` (a bound no step reached takes the other's).
  A run whose efficiency comes out above 1 beat its peaks: they are suspect, and the fit is
  refused (one domain error naming the run and the figure).
  Given single-device and TP × PP > 1 runs, the efficiencies come from the former and
  ``model_parallel_efficiency`` is the latter's kernel efficiency over theirs.
* **collectives**: TP > 1 runs' exposed collective time per profiled step and rank, over the
  all-reduces the model counts (two per layer), less the bandwidth term:
  ``allreduce_latency`` (all-gathers and waits for the slowest rank fold into it).
* **host overhead per step**: each engine step's length in ``steps/`` (unprofiled steps too:
  the profiler inflates host time; gaps are capped as ``tracekit compare`` caps them) less
  the device time the fitted model gives it, split by the profiled window's host : idle
  time into the rank's ``step_overhead`` and the engine core's ``schedule_overhead``; what
  TP × PP > 1 runs spend beyond that is ``multiprocess_overhead``.

PP hand-offs, EP dispatch/combine and the memory model keep their defaults; where the engine
fixes the KV cache (vLLM CPU), its size comes from the first run's blocks. The workload is
read from ``steps/``: requests admitted (rises of the running count), prefill and decode
tokens per request, the running batch. Each run's own layout is then predicted at its batch
and workload (``plan.predict``); errors are predicted / measured − 1, for decode throughput
(as ``tracekit compare`` counts it: no request's first token) and for the round (every
running sequence makes one token).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from analyzers.planning.plan import predict, stage_time
from analyzers.planning.run_measures import Run, kv_bytes, measure
from analyzers.rank.roofline_stage import DecodeContext
from analyzers.rank.step_annotations import StepRow
from tracekit.core import buckets as b
from tracekit.core.analysis import RankResult
from tracekit.core.errors import TracekitError
from tracekit.core.hardware import DeviceSpec
from tracekit.core.plan_result import Calibration, Costs, RunFit


def calibrate(paths: Sequence[str | Path], jobs: int | None = None) -> Calibration:
    """Fit ``Costs`` to the runs (module docstring); bad input raises TracekitError."""
    if not paths:
        raise TracekitError(None, "--calibrate needs at least one run directory")
    runs = [measure(Path(p), jobs) for p in paths]
    first = runs[0]
    device = first.facts.spec
    assert device is not None  # _measure checked
    for run in runs[1:]:
        other = run.facts.spec.name if run.facts.spec else None
        for what, same in (("model", run.spec.config == first.spec.config),
                           ("device", other == device.name)):  # fmt: skip
            if not same:
                raise TracekitError(run.path, f"its {what} differs from {first.name}'s: "
                                    "calibrate on runs of one deployment")  # fmt: skip
    evidence: dict[str, str] = {}
    costs = _kernels(runs, device, evidence)
    costs = _collectives(runs, device, costs, evidence)
    costs = _host(runs, device, costs, evidence)
    costs = _multiprocess(runs, device, costs, evidence)
    for name in ("p2p_latency", "dispatch_latency", "combine_latency"):
        evidence.setdefault(name, f"default {getattr(costs, name) * 1e6:g} µs: not fitted")
    notes = []
    if device.memory_bytes is None:
        costs = msgspec.structs.replace(costs, kv_cache_bytes=kv_bytes(first), runtime_overhead=0.0)
        evidence["kv_cache_bytes"] = (
            f"{costs.kv_cache_bytes or 0:,.0f} B per device: {first.name}'s KV blocks "
            "(the engine fixes them; the device has no memory figure)"
        )
        evidence["runtime_overhead"] = "0: no GPU runtime (CUDA context, graphs) on this device"
    if {r.workload for r in runs} != {first.workload}:
        notes.append("the runs' workloads differ; the plan uses the first run's")
    fits = [_fit(run, device, costs) for run in runs]
    notes.append(f"workload from {first.name}'s steps/: {first.workload.describe()}")
    errors = [abs(f.error) for f in fits]
    return Calibration(
        model=first.spec,
        device=device,
        workload=first.workload,
        costs=costs,
        evidence=evidence,
        runs=fits,
        notes=notes,
        mean_abs_error=sum(errors) / len(errors),
        max_abs_error=max(errors),
    )


# --- the fits ------------------------------------------------------------------------------


def _kernel_seconds(rank: RankResult, device: DeviceSpec) -> tuple[float, float, float, float]:
    """(compute at peak, measured compute, HBM at peak, measured HBM) in modelled steps."""
    roof = rank.roofline
    if roof is None or not roof.kinds or not roof.decided_ns:
        return 0.0, 0.0, 0.0, 0.0
    kinds = [k for k in roof.kinds if k.kind != "all"]
    peak_c = sum(k.compute_steps / k.steps * k.flops / device.flops for k in kinds if k.steps)
    peak_h = sum(
        (1 - k.compute_steps / k.steps) * k.bytes / device.bandwidth for k in kinds if k.steps
    )
    c, h = rank.buckets[b.COMPUTE], rank.buckets[b.HBM]
    share = c / (c + h) if c + h else 0.0
    decided = roof.decided_ns / 1e9
    return peak_c, decided * share, peak_h, decided * (1 - share)


def _kernel_totals(runs: Sequence[Run], device: DeviceSpec) -> list[float]:
    seconds = [_kernel_seconds(rank, device) for run in runs for rank in run.analysis.ranks]
    return [sum(column) for column in zip(*seconds, strict=True)] if seconds else [0.0] * 4


def _efficiency(runs: Sequence[Run], device: DeviceSpec) -> tuple[float | None, float | None]:
    pc, mc, ph, mh = _kernel_totals(runs, device)
    return (pc / mc if pc and mc else None), (ph / mh if ph and mh else None)


def _split(runs: Sequence[Run]) -> tuple[list[Run], list[Run]]:
    """(single-device runs, TP × PP > 1 runs)."""
    return [r for r in runs if r.layout.tp * r.layout.pp == 1], [
        r for r in runs if r.layout.tp * r.layout.pp > 1
    ]


def _kernels(runs: Sequence[Run], device: DeviceSpec, evidence: dict[str, str]) -> Costs:
    for run in runs:  # faster than the peak: the peak (or the cost model) is wrong
        for what, eff in zip(("compute", "HBM"), _efficiency([run], device), strict=True):
            if eff is not None and eff > 1:
                raise TracekitError(
                    run.path,
                    f"fitted {what} kernel efficiency {eff:.0%} is above 100%: the run beat "
                    f"its peaks ({device.name}: {device.source}), so they are suspect; "
                    "nothing to calibrate against",
                )
    single, multi = _split(runs)
    base = single or multi
    measured = _efficiency(base, device)
    f_eff, h_eff = measured[0] or measured[1], measured[1] or measured[0]
    if f_eff is None or h_eff is None:
        raise TracekitError(base[0].path, "no compute or HBM time in modelled steps to fit")
    names = ", ".join(r.name for r in base)
    where = f"profiled steps of {names}: roofline time at {device.name}'s peaks / measured"
    for key, got, eff, what, other in (
        ("flops_efficiency", measured[0], f_eff, "compute", "HBM"),
        ("hbm_efficiency", measured[1], h_eff, "HBM", "compute"),
    ):
        evidence[key] = (
            f"{eff:.3g}: {where} {what} time"
            if got
            else f"{eff:.3g}: no {what}-bound step; {other}'s efficiency"
        )
    mp = 1.0
    if single and multi:
        pairs = zip(_efficiency(multi, device), measured, strict=True)
        ratios = [mine / theirs for mine, theirs in pairs if mine and theirs]
        mp = sum(ratios) / len(ratios) if ratios else 1.0
        evidence["model_parallel_efficiency"] = (
            f"{mp:.3g}: kernel efficiency of {', '.join(r.name for r in multi)} over {names}"
        )
    else:
        kind = "single-device" if single else "TP × PP > 1"
        evidence["model_parallel_efficiency"] = f"1 (default): only {kind} runs given"
    return Costs(flops_efficiency=f_eff, hbm_efficiency=h_eff, model_parallel_efficiency=mp)


def _collectives(
    runs: Sequence[Run], device: DeviceSpec, costs: Costs, evidence: dict[str, str]
) -> Costs:
    link = (device.interconnect or device.bandwidth) * costs.link_efficiency
    spent = counted = 0.0
    used = []
    for run in runs:
        tp, m = run.facts.layout.tp, run.spec.config
        if tp == 1:
            continue
        used.append(run.name)
        for rank in run.analysis.ranks:
            steps = [s for s in rank.steps if s.context_tokens + s.generation_tokens]
            if not steps:
                continue
            tokens = sum(s.context_tokens + s.generation_tokens for s in steps) / len(steps)
            reduces = 2 * run.shards[rank.identity.pp or 0].layers(m.layers) * len(steps)
            wire = 2 * (tp - 1) / tp * tokens * m.hidden * 2 / link
            spent += rank.buckets[b.COLLECTIVE] / 1e9 - reduces * wire
            counted += reduces
    if not counted:
        evidence["allreduce_latency"] = (
            f"default {costs.allreduce_latency * 1e6:g} µs: no TP > 1 run to measure it"
        )
        return costs
    latency = max(0.0, spent / counted)
    evidence["allreduce_latency"] = (
        f"{latency * 1e6:.3g} µs: exposed collective time per all-reduce the model counts "
        f"(2 per layer per step) in {', '.join(used)}, less the bandwidth term"
    )
    return msgspec.structs.replace(costs, allreduce_latency=latency)


def _device_seconds(run: Run, device: DeviceSpec, costs: Costs, record: Any, ctx: Any) -> float:
    """The fitted model's device time for one engine step (the slowest PP stage)."""
    tokens = record.prefill_tokens + record.decode_tokens
    if not tokens:
        return 0.0
    prompt = max(run.workload.prompt, 1)
    requests = math.ceil(record.prefill_tokens / prompt)
    decode = record.decode_tokens
    step = StepRow(record.ts_ns, 0, requests, record.prefill_tokens, decode, decode)
    context = ctx(step)
    return max(
        sum(stage_time(run.spec, device, run.layout, costs, s, step, context).values())
        for s in run.shards
    )


def _overhead(run: Run, device: DeviceSpec, costs: Costs) -> tuple[float, int]:
    """(engine step time less modelled device time, summed; engine steps) of one run."""
    spent, steps = 0.0, 0
    for engine, rows in run.busy_ns.items():
        ctx = DecodeContext(run.facts, engine, [])
        for record, length in rows:
            spent += length / 1e9 - _device_seconds(run, device, costs, record, ctx)
            steps += 1
    return spent, steps


def _host(runs: Sequence[Run], device: DeviceSpec, costs: Costs, evidence: dict[str, str]) -> Costs:
    """Host overhead per engine step from single-device runs (else all): steps/ gives the
    total, the profiled window's host : (idle + kv_stall) time splits it between the rank
    (``step_overhead``) and the engine core it waits for (``schedule_overhead``)."""
    base = _split(runs)[0] or list(runs)
    got = [_overhead(run, device, costs) for run in base]
    spent, steps = sum(g[0] for g in got), sum(g[1] for g in got)
    total = max(0.0, spent / steps)
    rank_side = waiting = 0
    for run in base:
        for rank in run.analysis.ranks:
            rank_side += rank.buckets[b.HOST]
            waiting += rank.buckets[b.IDLE] + rank.buckets[b.KV_STALL]
    share = waiting / (rank_side + waiting) if rank_side + waiting else 0.0
    names = ", ".join(r.name for r in base)
    evidence["step_overhead"] = (
        f"{total * (1 - share) * 1e3:.3g} ms: {1 - share:.0%} of the {total * 1e3:.3g} ms per "
        f"engine step (length in steps/ less the modelled device time, {steps} steps of "
        f"{names}) by the profiled window's host share"
    )
    if spent <= 0:
        evidence["step_overhead"] = (
            f"0 ms, not measured: the modelled device time is not below the engine steps' "
            f"length in steps/ ({-spent / max(steps, 1) * 1e3:.3g} ms over per step, {steps} "
            f"steps of {names}), as when pipeline stages work on several steps at once"
        )
    evidence["schedule_overhead"] = (
        f"{total * share * 1e3:.3g} ms: the other {share:.0%} (ranks idle, waiting for the "
        "engine core)"
    )
    return msgspec.structs.replace(
        costs, step_overhead=total * (1 - share), schedule_overhead=total * share
    )


def _multiprocess(
    runs: Sequence[Run], device: DeviceSpec, costs: Costs, evidence: dict[str, str]
) -> Costs:
    """What TP × PP > 1 runs spend per engine step beyond the single-device runs' overheads:
    a round lasts schedule + multiprocess + PP × (step overhead + device time)."""
    single, multi = _split(runs)
    if not (single and multi):
        why = "no TP × PP > 1 run" if not multi else "no single-device run to set it against"
        evidence["multiprocess_overhead"] = f"0 (default): {why}"
        return costs
    total, count = 0.0, 0
    for run in multi:
        spent, steps = _overhead(run, device, costs)
        per_round = run.layout.pp * (spent / steps - costs.step_overhead)
        total += (per_round - costs.schedule_overhead) * steps
        count += steps
    extra = max(0.0, total / count)
    evidence["multiprocess_overhead"] = (
        f"{extra * 1e3:.3g} ms: engine step length of {', '.join(r.name for r in multi)} "
        "less the modelled device time and the single-device runs' overheads"
    )
    return msgspec.structs.replace(costs, multiprocess_overhead=extra)


def _fit(run: Run, device: DeviceSpec, costs: Costs) -> RunFit:
    work = msgspec.structs.replace(
        run.workload, concurrency=max(1, round(run.batch)) * run.layout.dp
    )
    got = predict(run.spec, device, run.layout, work, costs)
    if not got.feasible:
        raise TracekitError(run.path, f"its own layout is infeasible in the model: {got.reason}")
    decode_share = (work.output - 1) / work.output  # compare counts no prefill token
    per_engine = run.tokens_per_s / run.layout.dp
    ranks = [r for r in run.analysis.ranks if r.steps]
    coll = [r.buckets[b.COLLECTIVE] / len(r.steps) / 1e6 for r in ranks]
    spent, steps = _overhead(run, device, costs)
    pc, mc, ph, mh = _kernel_totals([run], device)
    measured_round = run.batch / per_engine * 1e3 * decode_share
    predicted = got.tokens_per_s * decode_share
    return RunFit(
        name=run.name,
        path=str(run.path),
        layout=run.layout.label,
        devices=run.layout.dp * run.layout.tp * run.layout.pp,
        batch=run.batch,
        kernel_efficiency=(pc + ph) / (mc + mh) if mc + mh else None,
        collective_ms=sum(coll) / len(coll) if coll else 0.0,
        host_ms=spent / steps * 1e3 if steps else 0.0,
        measured_tokens_per_s=run.tokens_per_s,
        predicted_tokens_per_s=predicted,
        measured_round_ms=measured_round,
        predicted_round_ms=got.round_ms,
        error=predicted / run.tokens_per_s - 1,
        round_error=got.round_ms / measured_round - 1,
    )
