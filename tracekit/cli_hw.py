"""``tracekit hw``: measure this CPU's peaks for the roofline, or show a GPU's spec row.

Register on the main group with ``main.add_command(hw_command)``. The command turns its
options into one library call (``tracekit.hardware.measure`` / ``spec_by_name``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``tracekit.cli.guarded``, looked up at call time so cli.py may import this module."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from tracekit.cli import guarded

        return guarded(fn)(*args, **kwargs)

    return wrapper


@click.command("hw")
@click.option(
    "--show",
    "show",
    default=None,
    metavar="GPU",
    help="Print the spec-table row for GPU (e.g. H100, MI300X) instead of measuring.",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write the measurement "
    "(default: $TRACEKIT_HW_CACHE, else ~/.cache/tracekit/hw.json).",
)
@click.option("--no-save", is_flag=True, help="Measure and print only.")
@_guarded
def hw_command(show: str | None, cache: Path | None, no_save: bool) -> None:
    """Measure this CPU (matmul FLOP/s, copy bandwidth) for roofline analysis of CPU runs."""
    from tracekit import hardware

    if show is not None:
        spec = hardware.spec_by_name(show)
        click.echo(describe(spec))
        return
    probe = hardware.measure()
    click.echo(describe(probe.spec()))
    if not no_save:
        click.echo(f"saved to {hardware.save(probe, cache)}", err=True)


def describe(spec: Any) -> str:
    lines = [
        f"{spec.name}",
        f"  peak compute   {spec.flops / 1e12:,.3f} TFLOP/s",
        f"  peak memory    {spec.bandwidth / 1e9:,.1f} GB/s",
        f"  ridge point    {spec.ridge:,.1f} FLOP/byte",
    ]
    if spec.memory_bytes:
        lines.append(f"  memory         {spec.memory_bytes / 1e9:,.0f} GB")
    if spec.interconnect:
        lines.append(f"  interconnect   {spec.interconnect / 1e9:,.0f} GB/s per direction")
    lines.append(f"  source         {spec.source}")
    return "\n".join(lines)


__all__ = ["hw_command"]
