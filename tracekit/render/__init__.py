"""Renderers: ``render(analysis) -> str | bytes``. Analysis code never prints.

Width: every text report fits the width it is given (no line longer, no cell cut to "…"):
tables get column widths that wrap at word boundaries (:func:`fit`), names too long for
their column are shortened in the middle with ASCII "..." (:func:`middle`), so a "…" in a
report is always the data's own, never a cut made by the renderer.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Iterable

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from tracekit.core.trace_model import RankId

MIN_WIDTH = 80  # the narrowest report: every renderer is tested at this width


def text_console(width: int, colour: bool) -> tuple[Console, io.StringIO]:
    """A rich console that renders into a string (ANSI colour only when asked)."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=colour,
        no_color=not colour,
        highlight=False,
        color_system="truecolor" if colour else None,
    )
    return console, buffer


def resolve_width(width: int | None, default: int) -> int:
    """The report width: an explicit --width wins, else the terminal's, else ``COLUMNS``
    (piped output), else ``default``; never under :data:`MIN_WIDTH`."""
    if width is None and sys.stdout.isatty():
        width = shutil.get_terminal_size((default, 40)).columns
    if width is None:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else default
    return max(width, MIN_WIDTH)


def middle(name: str, limit: int) -> str:
    """``name`` in at most ``limit`` characters: start and end kept, "..." between."""
    if len(name) <= limit:
        return name
    keep = max(limit - 3, 2)
    head = (keep + 1) // 2
    return name[:head] + "..." + name[len(name) - (keep - head) :]


def fit(console: Console, table: Table) -> bool:
    """Give ``table``'s columns widths that fit the console without cutting a cell: each
    column gets at least its widest cell (its longest word where the column has
    ``overflow="fold"``) and its header's longest word (whole header where ``no_wrap``);
    the room left goes to the columns that would wrap. False, and the table is left alone, where
    even that does not fit: the caller drops columns or shortens cells."""
    columns = table.columns
    if not columns:
        return True
    pad = table.padding[1] + table.padding[3]
    extra = (2 if table.box and table.show_edge else 0) + (len(columns) - 1 if table.box else 0)
    budget = console.width - extra - pad * len(columns)
    lows, highs = [], []
    for column in columns:
        header = [column.header] if table.show_header else []
        heads = [Measurement.get(console, console.options, c) for c in header]
        cells = [Measurement.get(console, console.options, c) for c in column.cells]
        high = max((s.maximum for s in heads + cells), default=1)
        wraps = column.overflow == "fold" and not column.no_wrap  # else a cell stays whole
        low = max(
            [h.maximum if column.no_wrap else h.minimum for h in heads]
            + [c.minimum if wraps else c.maximum for c in cells],
            default=1,
        )
        if column.min_width:
            low, high = max(low, column.min_width), max(high, column.min_width)
        if column.width is not None:
            low = high = column.width
        lows.append(low)
        highs.append(high)
    if sum(highs) <= budget:
        return True
    if sum(lows) > budget:
        return False
    widths = list(lows)
    room = budget - sum(lows)
    while room > 0:
        short = [i for i, w in enumerate(widths) if w < highs[i]]
        if not short:
            break
        wanted = sum(highs[i] - widths[i] for i in short)
        for i in short:
            give = min(highs[i] - widths[i], max(room * (highs[i] - widths[i]) // wanted, 1))
            give = min(give, room)
            widths[i] += give
            room -= give
    for column, w in zip(columns, widths, strict=True):
        column.width = w
    return True


def bullets(lines: Iterable[str | Text], mark: str = "•", indent: int = 2) -> Table:
    """Lines as a list with hanging indents: wrapped text lines up under the text, not
    under the mark or at column 0."""
    grid = Table.grid(padding=(0, 1, 0, 0))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for line in lines:
        grid.add_row(" " * indent + mark, line)
    return grid


def caption_left(table: Table) -> Table:
    """Captions start at the left edge, like titles (rich centres them by default)."""
    table.caption_justify = "left"
    return table


def ms(ns: int) -> str:
    """Nanoseconds as milliseconds, two decimals."""
    return f"{ns / 1e6:,.2f}"


def rank_labels(ids: list[RankId]) -> list[str]:
    """Short rank labels, "r0 tp1": the global rank, then only the dp/pp/tp/ep ranks that
    differ across ``ids`` (one that never varies says nothing in a table row)."""
    dims = [d for d in ("dp", "pp", "tp", "ep") if len({getattr(i, d) for i in ids}) > 1]
    return [
        " ".join(
            [f"r{i.rank}" if i.rank is not None else "r?"]
            + [f"{d}{getattr(i, d)}" for d in dims if getattr(i, d) is not None]
        )
        for i in ids
    ]
