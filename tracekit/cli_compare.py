"""``tracekit compare RUN RUN …``: runs side by side as a layout sweep.

Register on the main group with ``main.add_command(compare_command)``. The command turns its
options into one library call (``tracekit.compare.compare``), then renders.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from tracekit.cli_common import guarded, width_option


def _at_least_two(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    if len(value) < 2:
        raise click.BadParameter("give at least two runs to compare")
    return value


@click.command("compare")
@click.argument(
    "runs", nargs=-1, required=True, type=click.Path(path_type=Path), callback=_at_least_two
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON on stdout.")
@width_option
@guarded
def compare_command(runs: tuple[Path, ...], as_json: bool, width: int | None) -> None:
    """Compare runs (run directories, trace folders or traces) as a layout sweep: throughput
    and throughput per device, decode step latency, bucket shares and regime per layout, and
    which layout is faster per device at equal device count, and why."""
    from tracekit.compare import compare, to_json

    comparison = compare(runs)
    if as_json:
        sys.stdout.buffer.write(to_json(comparison) + b"\n")
        return
    from tracekit.render import resolve_width
    from tracekit.render.compare import render

    colour = sys.stdout.isatty()
    width = resolve_width(width, 160)
    click.echo(render(comparison, width=width, colour=colour), nl=False)


__all__ = ["compare_command"]
