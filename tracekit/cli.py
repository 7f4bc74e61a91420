"""The click CLI: each command turns options into one library call, then renders."""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tracekit import __version__
from tracekit.errors import TracekitError

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


def _fail(message: str, code: int) -> None:
    click.echo(f"tracekit: error: {message}", err=True)
    sys.exit(code)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One line and a non-zero exit for bad input; a traceback only with -v."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = click.get_current_context().find_root().params.get("verbose", 0)
        try:
            return fn(*args, **kwargs)
        except TracekitError as exc:
            _fail(str(exc), EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:  # a bug: say so in one line unless asked for detail
            if verbose:
                raise
            _fail(
                f"internal error: {type(exc).__name__}: {exc} (rerun with -v for the "
                "traceback and please report it)",
                EXIT_INTERNAL,
            )

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracekit")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
def main(verbose: int) -> None:
    """Profile and analyse LLM inference runs (vLLM): where the time went, and why."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the Analysis as JSON on stdout.")
@click.option("--top", default=12, show_default=True, help="Rows in the top-ops table.")
@click.option("--width", default=None, type=int, help="Report width (default: terminal).")
@guarded
def analyze(path: Path, as_json: bool, top: int, width: int | None) -> None:
    """Analyse a trace file, a folder of per-rank traces, or a run directory."""
    from analyzers.pipeline import analyze as run_analysis
    from tracekit.progress import progress_bar

    with progress_bar(enabled=sys.stderr.isatty()) as progress:
        analysis = run_analysis(path, progress=progress)
    if as_json:
        from tracekit.render.json import render as render_json

        sys.stdout.buffer.write(render_json(analysis))
        return
    from tracekit.render.console import render as render_console

    colour = sys.stdout.isatty()
    if width is None:
        width = shutil.get_terminal_size((120, 40)).columns if colour else 120
    click.echo(render_console(analysis, width=max(width, 80), colour=colour, top=top), nl=False)


if __name__ == "__main__":
    main()
