"""``tracekit export`` and ``tracekit open``: a run as a Perfetto timeline, and in the UI.

Register on the main group with ``main.add_command(export_command)`` and
``main.add_command(open_command)``. Each command turns its options into one library call
(``tracekit.export.export``, ``tracekit.open_ui.serve_once``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from tracekit.cli_common import guarded

if TYPE_CHECKING:
    from tracekit.export.timeline import ExportSummary

EXPORT_SUFFIXES = (".pftrace", ".perfetto-trace", ".pb")


def default_output(source: Path, fmt: str) -> Path:
    """``run/`` → ``run.pftrace``; ``rank0.pt.trace.json.gz`` → ``rank0.pftrace``."""
    name = source.resolve().name
    for suffix in (".gz", ".json", ".pt.trace"):
        name = name.removesuffix(suffix)
    return Path(name + (".json" if fmt == "json" else ".pftrace"))


def describe(summary: ExportSummary) -> str:
    flows = ", ".join(f"{n} {kind}" for kind, n in summary.flows.items())
    return (
        f"wrote {summary.path} ({summary.bytes / 1e6:.1f} MB, {summary.format}): "
        f"{summary.ranks} rank(s), {summary.tracks} tracks, {summary.slices} slices, "
        f"{summary.counter_values} counter values, flows: {flows} "
        f"in {summary.seconds:.2f} s"
    )


@click.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Output file (default: PATH's name + .pftrace, or .json with --format json).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["perfetto", "json"]),
    default=None,
    help="perfetto: native protobuf (.pftrace); json: Chrome trace JSON. "
    "Default: from the output's suffix (.json → json), else perfetto.",
)
@guarded
def export_command(path: Path, output: Path | None, fmt: str | None) -> None:
    """Write a run's timeline for ui.perfetto.dev: per-rank processes with the original
    streams and threads, tracekit's bucket lane, engine steps, regime, step counters and
    launch / pipeline flows."""
    from tracekit.export import Format, export, format_for

    if fmt is None:
        fmt = format_for(output) if output is not None else "perfetto"
    output = output or default_output(path, fmt)
    summary = export(path, output, cast(Format, fmt))
    click.echo(describe(summary), err=True)


def is_export(path: Path) -> bool:
    """A file the UI opens as it is: a .pftrace, or a Chrome JSON written by tracekit export."""
    if not path.is_file():
        return False
    if path.name.endswith(EXPORT_SUFFIXES):
        return True
    if path.name.endswith(".json"):
        from tracekit.export.chrome import MARKER

        with path.open("rb") as handle:
            return handle.read(len(MARKER)) == MARKER
    return False


@click.command("open")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--port", default=9001, show_default=True, help="Loopback port to serve on.")
@click.option("--no-browser", is_flag=True, help="Only print the URL to open.")
@click.option(
    "--timeout",
    default=300.0,
    show_default=True,
    help="Seconds to wait for the UI to fetch the trace before giving up.",
)
@guarded
def open_command(path: Path, port: int, no_browser: bool, timeout: float) -> None:
    """Open a run, trace or export in ui.perfetto.dev: serve it once on 127.0.0.1:PORT."""
    if is_export(path):
        _serve(path, port, no_browser, timeout)
        return
    from tracekit.export import export

    with tempfile.TemporaryDirectory(prefix="tracekit-open-") as tmp:
        summary = export(path, Path(tmp) / default_output(path, "perfetto").name)
        click.echo(describe(summary), err=True)
        _serve(Path(summary.path), port, no_browser, timeout)


def _serve(path: Path, port: int, no_browser: bool, timeout: float) -> None:
    from tracekit.core.errors import TracekitError
    from tracekit.open_ui import open_browser, serve_once, ui_url

    def ready(bound: int) -> None:
        url = ui_url(path.name, bound)
        if not no_browser and open_browser(url):
            click.echo(f"opened {url}", err=True)
        else:
            click.echo(url)
        click.echo(
            f"serving {path.name} once on http://127.0.0.1:{bound}/ (timeout {timeout:g} s)",
            err=True,
        )

    if not serve_once(path, port, timeout, on_ready=ready):
        raise TracekitError(path, f"the UI did not fetch the trace within {timeout:g} s")
    click.echo("trace served; done", err=True)


__all__ = ["export_command", "open_command"]
