"""``tracekit plan`` output: the ranked layouts as a table, or as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from analyzers.plan import Plan
from tracekit.render import text_console
from tracekit.render.console import SHORT

SCHEMA_VERSION = 1


def to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as plain JSON-ready data (one entry per layout, best first)."""
    rows = []
    for rank, row in enumerate(plan.layouts, 1):
        data = asdict(row)
        data["layout"] = {**data["layout"], "name": row.layout.name}
        data["rank"] = rank if row.feasible else None
        rows.append(data)
    best = plan.best
    return {
        "schema_version": SCHEMA_VERSION,
        "model": plan.model,
        "gpu": plan.gpu,
        "gpus": plan.gpus,
        "workload": {**asdict(plan.workload), "mean_context": plan.workload.mean_context},
        "best": best.layout.name if best else None,
        "layouts": rows,
        "notes": plan.notes,
    }


def render_json(plan: Plan) -> str:
    return json.dumps(to_dict(plan), indent=2) + "\n"


def render(plan: Plan, width: int = 160, colour: bool = False) -> str:
    console, buffer = text_console(width, colour)
    title = f"tracekit plan: {plan.model} on {plan.gpus}× {plan.gpu}, {plan.workload.describe()}"
    console.print(Text(title, style="bold"))
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for header in ("#", "layout", "weights GB", "act GB", "KV GB/dev", "max seqs", "batch"):
        t.add_column(header, justify="left" if header == "layout" else "right", no_wrap=True)
    for header in ("round ms", "tok/s", "tok/s/dev", "regime", "round shares"):
        t.add_column(header, justify="left" if header[0] == "r" else "right")
    feasible = [r for r in plan.layouts if r.feasible]
    for rank, r in enumerate(feasible, 1):
        shares = " ".join(
            f"{SHORT.get(k, k)} {v:.0%}" for k, v in sorted(r.shares.items(), key=lambda kv: -kv[1])
            if v >= 0.01
        )  # fmt: skip
        t.add_row(
            str(rank), r.layout.name, f"{r.weights_gb:,.1f}", f"{r.activations_gb:.1f}",
            f"{r.kv_gb:,.1f}", f"{r.max_seqs:,}", f"{r.batch:,}", f"{r.round_ms:,.1f}",
            f"{r.tokens_per_s:,.0f}", f"{r.per_device:,.0f}", r.regime, shares,
        )  # fmt: skip
    console.print(t)
    best = plan.best
    if best:
        runners = ", ".join(f"{k} {v:.2f}" for k, v in list(best.scores.items())[1:3])
        console.print(
            Text(
                f"best per device: {best.layout.name}, {best.per_device:,.0f} tok/s/GPU, "
                f"{best.regime} (scores: {best.scores[best.regime]:.2f}; {runners})",
                style="bold",
            )
        )
    else:
        console.print(Text("no feasible layout", style="bold red"))
    for r in plan.layouts:
        if not r.feasible:
            console.print(Text(f"infeasible {r.layout.name}: {r.reason}"))
    for note in plan.notes:
        console.print(Text(f"note: {note}", style="italic"))
    return buffer.getvalue()
