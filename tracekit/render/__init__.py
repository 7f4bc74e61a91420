"""Renderers: ``render(analysis) -> str | bytes``. Analysis code never prints."""

from __future__ import annotations

import io

from rich.console import Console


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


def ms(ns: int) -> str:
    """Nanoseconds as milliseconds, two decimals."""
    return f"{ns / 1e6:,.2f}"
