"""The stragglers report in words (``Analysis.stragglers``), shown only when a rank is named:
who came last, the waits it caused, and whether its kernels or its host time explain it; then
the steps with the longest waits."""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from tracekit.core.analysis import Analysis
from tracekit.core.stragglers import SlowRank, Stragglers
from tracekit.render import bullets, ms

TITLE = "Stragglers"
STEPS_SHOWN = 3
_CAUSE = {
    "kernels": "its kernel time explains it",
    "host": "its host time explains it",
    "unexplained": "neither its kernel nor its host time explains it (a late launch, clock "
    "offset or work outside the window)",
}


def slow_line(s: SlowRank, matched: int) -> str:
    line = (
        f"{s.label} arrived last at {s.last_share:.0%} of the {matched} collectives of "
        f"{s.group}; the others waited {ms(s.caused_ns)} ms for it ({s.caused_share:.1%} of "
        f"their time). Kernels {ms(s.kernel_ns)} ms vs {ms(s.others_kernel_ns)} ms on the "
        f"others (median), host {ms(s.host_ns)} vs {ms(s.others_host_ns)} ms: {_CAUSE[s.cause]}"
    )
    if s.op is not None and s.op_ns is not None and s.others_op_ns is not None:
        line += f"; furthest above the others: {s.op} {ms(s.op_ns)} vs {ms(s.others_op_ns)} ms"
    return line + "."


def steps_table(st: Stragglers, group: str) -> Table | None:
    """The group's steps with the longest waits (None without steps)."""
    rows = sorted((s for s in st.steps if s.group == group), key=lambda s: (-s.wait_ns, s.step))
    if not rows:
        return None
    table = Table(
        title=f"Waits per step, {group} (longest first)", box=box.SIMPLE_HEAD, title_justify="left"
    )
    for col in ("step", "kind", "collectives", "last to arrive", "wait ms"):
        table.add_column(col, justify="left" if col in ("kind", "last to arrive") else "right")
    for s in rows[:STEPS_SHOWN]:
        table.add_row(
            str(s.step), s.kind, str(s.collectives), f"{s.last} ({s.last_calls}×)", ms(s.wait_ns)
        )
    return table


def straggler_parts(a: Analysis) -> list[Text | Table]:
    """The section's title, lines and step tables; nothing where no rank is named."""
    st = a.stragglers
    if st is None or not st.slow:
        return []
    matched = {g.group: g.matched for g in st.groups}
    parts: list[Text | Table] = [Text(TITLE, style="bold")]
    parts.append(bullets([slow_line(s, matched[s.group]) for s in st.slow]))
    for s in st.slow:
        table = steps_table(st, s.group)
        if table is not None:
            parts.append(table)
    return parts
