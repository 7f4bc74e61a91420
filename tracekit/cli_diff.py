"""``tracekit diff A B``: which ops and kernels got slower or faster between two runs.

Register on the main group with ``main.add_command(diff_command)``. The command turns its
options into one library call (``tracekit.kernel_diff.diff``), then renders.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tracekit.cli_common import guarded, jobs_option, top_option, width_option


@click.command("diff")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON on stdout.")
@top_option(20, "Rows in the table of changes (--json lists every change).")
@width_option
@jobs_option
@guarded
def diff_command(
    a: Path, b: Path, as_json: bool, top: int, width: int | None, jobs: int | None
) -> None:
    """Diff two runs (run directories, trace folders or traces) op by op and kernel by
    kernel: what got slower or faster, by how much and its share of the change, matched by
    name and recorded shape, largest change first."""
    from tracekit.kernel_diff import diff, to_json

    result = diff(a, b, jobs)
    if as_json:
        sys.stdout.buffer.write(to_json(result) + b"\n")
        return
    from tracekit.render import resolve_width
    from tracekit.render.kernel_diff import render

    width = resolve_width(width, 120)
    click.echo(render(result, width=width, colour=sys.stdout.isatty(), top=top), nl=False)


__all__ = ["diff_command"]
