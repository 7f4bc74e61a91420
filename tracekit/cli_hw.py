"""``tracekit hw``: probe this CPU as the engine runs it, or show a GPU's spec row.

Register on the main group with ``main.add_command(hw_command)``. The command turns its
options into one library call (``tracekit.core.cpu_probe.measure`` / ``spec_by_name``). The probe
needs torch (run it in the environment vLLM runs in); without it the command says so in one
line and exits non-zero. What it measures is shown while it measures. The figures go to a
cache for display: analysis uses the peaks a capture recorded in the run's manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from tracekit.cli_common import guarded


@click.command("hw")
@click.option(
    "--show",
    "show",
    default=None,
    metavar="GPU",
    help="Print the spec-table row for GPU (e.g. H100, MI300X) instead of measuring.",
)
@click.option(
    "--dtype",
    default="bfloat16",
    show_default=True,
    type=click.Choice(["bfloat16", "float16", "float32"]),
    help="The GEMMs' dtype (a run's model dtype).",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write the measurement "
    "(default: $TRACEKIT_HW_CACHE, else ~/.cache/tracekit/hw.json).",
)
@click.option("--no-save", is_flag=True, help="Measure and print only.")
@guarded
def hw_command(show: str | None, dtype: str, cache: Path | None, no_save: bool) -> None:
    """Probe this CPU: the engine's GEMM paths (F.linear, vLLM's oneDNN op) and copy
    bandwidth, with its ISA flags. Capture records the same probe in each run directory."""
    from tracekit.core import cpu_probe, hardware

    if show is not None:
        spec = hardware.spec_by_name(show)
        click.echo(describe(spec))
        return
    with _status() as report:
        probe = cpu_probe.measure(dtype, report=report)
    click.echo(describe(probe.spec("measured here by `tracekit hw`")))
    click.echo(f"  ISA flags      {' '.join(probe.isa) or '-'}; {probe.threads} thread(s)")
    click.echo(f"  GEMM path      {probe.path} ({probe.dtype}) won")
    if not no_save:
        click.echo(f"saved to {cpu_probe.save(probe, cache)}", err=True)


@contextmanager
def _status() -> Iterator[Callable[[str, str | None], None]]:
    """A rich status line naming the measurement under way; each result printed as it ends
    (stderr, so stdout holds the figures only)."""
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("probing this CPU") as status:

        def report(label: str, result: str | None) -> None:
            if result is None:
                status.update(f"measuring {label}")
            else:
                console.print(f"  {label}: {result}")

        yield report


def describe(spec: Any) -> str:
    lines = [
        f"{spec.name}",
        "  peak compute   "
        + (
            f"{spec.flops / 1e12:,.3f} TFLOP/s"
            if spec.flops >= 1e12
            else f"{spec.flops / 1e9:,.1f} GFLOP/s"
        ),
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
