"""The report's roofline tables: per engine step (model config) and per op call (shapes)."""

from __future__ import annotations

from rich import box
from rich.table import Table

from tracekit.core.analysis import Analysis
from tracekit.render import ms, rank_labels


def _pct(value: float | None, error: str | None) -> str:
    return "model error" if error else "-" if value is None else f"{value:.1f}"


def step_roofline_table(a: Analysis) -> Table | None:
    ranks = [r for r in a.ranks if r.roofline is not None and r.roofline.kinds]
    if not ranks:
        return None
    spec = a.hardware
    table = Table(
        title="Roofline per engine step (roofline (model config + step tokens) vs "
        + (f"{spec.name}: {spec.source})" if spec else "peaks)"),
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for col in ("rank", "kind", "steps", "compute bound", "FLOP/byte", "ridge", "FLOP/s %", "BW %"):
        table.add_column(col, justify="left" if col in ("rank", "kind") else "right")
    for r, label in zip(ranks, rank_labels([r.identity for r in ranks]), strict=True):
        roof = r.roofline
        assert roof is not None
        for k in roof.kinds:
            table.add_row(
                label,
                k.kind,
                str(k.steps),
                str(k.compute_steps),
                f"{k.intensity:,.1f}",
                f"{roof.ridge:,.1f}",
                _pct(k.flops_pct, k.model_error),
                _pct(k.bandwidth_pct, k.model_error),
            )
    table.caption = (
        "achieved = modelled FLOPs (bytes) / step time, % of peak; above peak is a model "
        "error, never a measurement"
    )
    return table


def op_roofline_table(a: Analysis) -> Table | None:
    ranks = [r for r in a.ranks if r.roofline is not None and r.roofline.ops]
    if not ranks:
        return None
    table = Table(
        title="Roofline per op call (trace shapes: FLOPs / bytes from recorded input dims)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for col in ("rank", "kind", "calls", "compute bound", "FLOP/byte", "ms", "FLOP/s %", "BW %"):
        table.add_column(col, justify="left" if col in ("rank", "kind") else "right")
    for r, label in zip(ranks, rank_labels([r.identity for r in ranks]), strict=True):
        assert r.roofline is not None
        for k in r.roofline.ops:
            table.add_row(
                label,
                k.kind,
                str(k.ops),
                str(k.compute_ops),
                f"{k.intensity:,.1f}",
                ms(k.time_ns),
                _pct(k.flops_pct, k.model_error),
                _pct(k.bandwidth_pct, k.model_error),
            )
    table.caption = (
        "each call tree's outermost costed op; time = its kernels (GPU) or its span (CPU); "
        "achieved = modelled / time, % of peak; above peak is a model error, never a measurement"
    )
    return table
