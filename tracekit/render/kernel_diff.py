"""The kernel diff in the terminal: what each run holds, then the ops and kernels that
changed most, largest change first (``tracekit.kernel_diff``)."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracekit.kernel_diff import KernelDiff, OpChange, RunSide
from tracekit.render import caption_left, fit, middle, ms, text_console

COLUMNS = ("name", "kind", "family", "A ms", "B ms", "Δ ms", "Δ %", "share", "calls A→B")
#: narrow terminals: whole columns go, in this order
DROP_ORDER = ("kind", "calls A→B", "family", "A ms", "B ms")


def render(d: KernelDiff, width: int = 120, colour: bool = False, top: int = 20) -> str:
    console, buffer = text_console(width, colour)
    console.print(Text("tracekit diff: ops and kernels, B against A", style="bold"))
    for mark, side in (("A", d.a), ("B", d.b)):
        console.print(Text(f"{mark}: {_side(side)}"))
    console.print(
        Text(
            f"op time {ms(d.a.op_ns)} → {ms(d.b.op_ns)} ms ({_signed(d.net_ns)} ms net, "
            f"{ms(d.gross_ns)} ms changed in all)"
        )
    )
    console.print(Text(f"times: {d.time}; ops matched by {d.matched_by}", style="italic"))
    table, dropped = _fitted(console, d, top)
    console.print(table)
    if dropped:
        console.print(Text(f"left out to fit the width: {', '.join(dropped)}", style="italic"))
    for warning in d.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    return buffer.getvalue()


def _fitted(console: Console, d: KernelDiff, top: int) -> tuple[Table, list[str]]:
    """The table at the console's width: long names shortened in the middle first, then
    whole columns left out (``DROP_ORDER``), never parts of cells."""
    dropped: list[str] = []
    for column in (None, *DROP_ORDER):
        if column is not None:
            dropped.append(column)
        for limit in range(70, 19, -5):
            table = changes_table(d, top, limit, dropped)
            if fit(console, caption_left(table)):
                return table, dropped
    return table, dropped


def _signed(ns: int) -> str:
    return f"{ns / 1e6:+,.2f}"


def _side(s: RunSide) -> str:
    return (
        f"{s.path} ({s.ranks} rank(s), {s.device.upper()}, window {ms(s.window_ns)} ms over "
        f"the ranks, {s.steps} engine step(s), shapes {'recorded' if s.shapes else 'not recorded'})"
    )


def _name(c: OpChange, limit: int) -> str:
    name = middle(c.name, limit)
    if c.op:
        name += f" ← {middle(c.op, limit)}"
    if c.shape:
        name += f" {middle(c.shape, limit)}"
    return name


def changes_table(
    d: KernelDiff, top: int, name_limit: int = 70, dropped: Sequence[str] = ()
) -> Table:
    shown = d.changes[:top]
    table = Table(
        title=f"Largest changes ({len(shown)} of {len(d.changes)} changed; {d.unchanged} same)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    columns = [c for c in COLUMNS if c not in dropped]
    for col in columns:
        left = col in ("name", "kind", "family")
        table.add_column(col, justify="left" if left else "right", no_wrap=col != "name")
    for c in shown:
        cells = {
            "name": _name(c, name_limit),
            "kind": c.kind,
            "family": c.family,
            "A ms": ms(c.a_ns),
            "B ms": ms(c.b_ns),
            "Δ ms": _signed(c.delta_ns),
            "Δ %": f"{c.change:+.0%}" if c.change is not None else c.status,
            "share": f"{c.share:+.1%}",
            "calls A→B": f"{c.calls_a}→{c.calls_b}",
        }
        table.add_row(*(cells[col] for col in columns))
    table.columns[0].overflow = "fold"
    table.caption = (
        "Δ = B − A; share = Δ over the sum of every row's |Δ|; ← the op that launched a kernel"
    )
    return table
