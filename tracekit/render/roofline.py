"""The report's roofline tables: per engine step (model config) and per op call (shapes)."""

from __future__ import annotations

import numpy as np
from rich import box
from rich.table import Table

from tracekit.core.analysis import Analysis
from tracekit.render import bullets, ms, rank_labels


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


#: per op-call source (``OpKindRoofline.source``): its table's title
OP_TABLE_TITLES = {
    "trace shapes": "Roofline per op call (trace shapes: FLOPs / bytes from recorded input dims)",
    "capture shapes": "Roofline per op call (capture shapes: graph-replayed kernels costed by "
    "the ops and input dims recorded when their graph was captured)",
}


def op_roofline_table(a: Analysis, source: str = "trace shapes") -> Table | None:
    ranks = [
        r
        for r in a.ranks
        if r.roofline is not None and any(k.source == source for k in r.roofline.ops)
    ]
    if not ranks:
        return None
    table = Table(title=OP_TABLE_TITLES[source], box=box.SIMPLE_HEAD, title_justify="left")
    for col in ("rank", "kind", "calls", "compute bound", "FLOP/byte", "ms", "FLOP/s %", "BW %"):
        table.add_column(col, justify="left" if col in ("rank", "kind") else "right")
    for r, label in zip(ranks, rank_labels([r.identity for r in ranks]), strict=True):
        assert r.roofline is not None
        for k in r.roofline.ops:
            if k.source != source:
                continue
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


#: how each source of ``RankRoofline.costed_ns`` reads in the report
COSTED_WORDS = {
    "trace_shapes": "trace shapes",
    "capture_shapes": "capture shapes",
    "model_config": "model config",
    "name_rules": "name rules",
}


def costed_lines(a: Analysis) -> list[str]:
    """Per rank: its busy time's shares by what costed it (``RankRoofline.costed_ns``)."""
    ranks = [r for r in a.ranks if r.roofline is not None and r.roofline.costed_ns]
    out = []
    for r, label in zip(ranks, rank_labels([r.identity for r in ranks]), strict=True):
        assert r.roofline is not None
        costed = r.roofline.costed_ns
        busy = sum(costed.values())
        if not busy:
            continue
        parts = ", ".join(
            f"{COSTED_WORDS[k]} {100 * v / busy:.1f}%" for k, v in costed.items() if v
        )
        out.append(f"{label}: busy {ms(busy)} ms costed by {parts}")
        layers = r.roofline.layers_ns
        if len(layers) > 1 and all(sum(v.values()) for v in layers.values()):
            out.append(f"{label}: {layer_line(layers)}")
    return out


def roofline_parts(a: Analysis) -> list[Table]:
    """The roofline tables, then what costed each rank's busy time."""
    tables = (step_roofline_table(a), *(op_roofline_table(a, s) for s in OP_TABLE_TITLES))
    parts = [t for t in tables if t is not None]
    lines = costed_lines(a)
    if lines:
        costed = bullets(lines)
        costed.title = "What costed the busy time (compute vs HBM split)"
        costed.title_justify = "left"
        parts.append(costed)
    return parts


def layer_line(layers: dict[int, dict[str, int]]) -> str:
    """The layers' replayed time: their median, the slowest, and the op kind that made it so."""
    total = {k: sum(v.values()) for k, v in layers.items()}
    median = float(np.median(list(total.values())))
    slow = max(total, key=lambda k: total[k])
    kinds = {kind for v in layers.values() for kind in v}
    typical = {k: float(np.median([v.get(k, 0) for v in layers.values()])) for k in kinds}
    worst = max(kinds, key=lambda k: layers[slow].get(k, 0) - typical[k])
    return (
        f"graph-replayed time per decoder layer (capture): {len(layers)} layers, median "
        f"{ms(round(median))} ms; slowest layer {slow} at {ms(total[slow])} ms "
        f"({total[slow] / median:.2f}× the median), its {worst} ops "
        f"{ms(layers[slow].get(worst, 0))} ms against a median {ms(round(typical[worst]))} ms"
    )
