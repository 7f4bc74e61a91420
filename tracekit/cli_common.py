"""What every command of the CLI shares: one line and a non-zero exit for bad input
(``guarded``), and the options several commands take (``width_option``, ``jobs_option``,
``top_option``)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from tracekit.core.errors import TracekitError

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


def fail(message: str, code: int) -> None:
    click.echo(f"tracekit: error: {message}", err=True)
    sys.exit(code)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One line and a non-zero exit for bad input; a traceback only with -v."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = click.get_current_context().find_root().params.get("verbose", 0)
        try:
            return fn(*args, **kwargs)
        except TracekitError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except click.ClickException:
            raise  # usage errors: click prints them with the usage line
        except Exception as exc:  # a bug: say so in one line unless asked for detail
            if verbose:
                raise
            fail(
                f"internal error: {type(exc).__name__}: {exc} (rerun with -v for the "
                "traceback and please report it)",
                EXIT_INTERNAL,
            )

    return wrapper


#: ``--width``: the report's width; without it the terminal's, else ``COLUMNS`` when piped
#: (``tracekit.render.resolve_width``)
width_option = click.option(
    "--width",
    default=None,
    type=click.IntRange(min=1),
    help="Report width (default: terminal, else COLUMNS).",
)


#: ``-j/--jobs``: worker processes for the ranks (``analyzers.engine.driver.pool_executor``)
jobs_option = click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Ranks analysed at once in worker processes, parsing and per-rank stages "
    "(default: one per core, at most one per file; 1: no pool).",
)


def top_option(default: int, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--top N``: rows in the report's main table (``what`` says which)."""
    return click.option(
        "--top", default=default, show_default=True, type=click.IntRange(min=1), help=what
    )
