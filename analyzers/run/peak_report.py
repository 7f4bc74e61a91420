"""Where the roofline's peaks came from, and whether the run's own figures contradict them.

A modelled figure above the device's peak (``op_roofline.peak_errors``: a step kind or an op
kind whose achieved FLOP/s or bandwidth exceeds it) is a model error — of the cost model or
of the peak. A peak the run beats is **suspect**: the report says so with the worst ratio,
and the compute vs HBM split stops deciding the verdict (``analyzers.run.verdict``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from tracekit.core.analysis import KindRoofline, OpKindRoofline, Peaks, RankResult
from tracekit.core.hardware import DeviceSpec

Origin = Literal["capture probe", "spec table", "given"]
CAPTURE_ORIGIN = "recorded at capture"  # the CPU probe's DeviceSpec.source begins so
SPEC_TABLE_ORIGIN = "spec table"


def peaks_report(ranks: Sequence[RankResult], spec: DeviceSpec | None, note: str) -> Peaks:
    """The peaks' origin and source, and the worst figure above them (if any)."""
    if spec is None:
        return Peaks(origin="none", source=note or "no peaks: no model config or shapes to use")
    origin: Origin = (
        "capture probe"
        if spec.source.startswith(CAPTURE_ORIGIN)
        else "spec table"
        if spec.source.startswith(SPEC_TABLE_ORIGIN)
        else "given"
    )
    source = f"{spec.name}: {spec.source}"
    worst = worst_above_peak(ranks, spec)
    if worst is None:
        return Peaks(origin=origin, source=source)
    ratio, where = worst
    suspect = (
        f"roofline figures exceed the peak, worst {where} at {ratio:,.2f}× the peak: the peaks "
        f"({spec.name}) are suspect, so the compute vs HBM split does not decide the verdict"
    )
    return Peaks(origin=origin, source=source, suspect=suspect, worst_ratio=round(ratio, 3))


def worst_above_peak(ranks: Sequence[RankResult], spec: DeviceSpec) -> tuple[float, str] | None:
    """(achieved / peak, where) of the worst figure flagged above the peak, or None."""
    worst: tuple[float, str] | None = None
    for rank in ranks:
        roof = rank.roofline
        if roof is None:
            continue
        rows: list[tuple[str, KindRoofline | OpKindRoofline]] = [
            *((f"{k.kind} steps", k) for k in roof.kinds if k.model_error),
            *((f"{k.kind} ops", k) for k in roof.ops if k.model_error),
        ]
        for what, k in rows:
            seconds = k.time_ns / 1e9
            if seconds <= 0:
                continue
            for figure, amount, peak in (
                ("FLOP/s", k.flops, spec.flops),
                ("bandwidth", k.bytes, spec.bandwidth),
            ):
                ratio = amount / seconds / peak
                if ratio > 1 and (worst is None or ratio > worst[0]):
                    worst = (ratio, f"{rank.label} {what} modelled {figure}")
    return worst
