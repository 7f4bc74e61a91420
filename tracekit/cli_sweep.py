"""``tracekit sweep --layouts SPEC --out DIR -- COMMAND …``: one command under several layouts.

Register on the main group with ``main.add_command(sweep_command)``. The command turns its
options into one library call (``tracekit.sweep.run``), then renders the comparison
(``tracekit.render.compare``) and the per-layout outcome.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tracekit.cli_common import guarded, width_option

if TYPE_CHECKING:
    from tracekit.sweep import SweepRecord


def _report(line: str) -> None:
    click.echo(f"tracekit sweep: {line}", err=True)


def outcome(record: SweepRecord) -> str:
    """One line per layout of this invocation: status, exit code, regime or the failure."""
    lines = [f"sweep {record.status}: {len(record.layouts)} layout(s)"]
    for label in record.layouts:
        entry = record.runs[label]
        code = "" if entry.exit_code is None else f", exit code {entry.exit_code}"
        if entry.status == "complete":
            detail = f"regime {entry.regime}"
        elif entry.status == "pending":
            detail = "not run"
        else:
            error = None if entry.error == f"exit code {entry.exit_code}" else entry.error
            last = f"last log line: {entry.last_line}" if entry.last_line else None
            detail = "; ".join(x for x in (error, last) if x) or entry.status
        lines.append(f"  {label:<16} {entry.status}{code}: {detail} ({entry.run}/)")
        lines += [f"  {'':<16} warning: {w}" for w in entry.warnings]
    return "\n".join(lines) + "\n"


@click.command(
    "sweep",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "-l",
    "--layouts",
    required=True,
    help="Layouts to run, separated by ',' or ';'; one layout joins degrees with '+': "
    "'tp=1,tp=2,pp=2,dp=2' is four layouts, 'tp=2+pp=2' one (TP=2 × PP=2). Keys: tp=N, "
    "pp=N, dp=N, ep (expert parallelism); degrees left out are 1.",
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Sweep directory: one run directory per layout, sweep.json, comparison.json. Rerun "
    "the same sweep to resume it.",
)
@click.option(
    "--client",
    default=None,
    metavar="'CMD ARGS'",
    help="For a server COMMAND (vllm serve): a client command (one shell-quoted string) run "
    "once the server starts; it must wait for the server's readiness itself. When it exits, "
    "the server is stopped (SIGINT) and the run kept; a failing client fails the layout.",
)
@click.option(
    "--warmup-steps",
    default=5,
    show_default=True,
    help="Engine steps to skip before each profiled window.",
)
@click.option("--steps", default=20, show_default=True, help="Engine steps to profile per run.")
@click.option("--record-shapes", is_flag=True, help="Record op input shapes (larger traces).")
@click.option(
    "-q", "--quiet", is_flag=True, help="Keep the command's output in each run's logs/ only."
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON on stdout.")
@width_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@guarded
def sweep_command(
    layouts: str,
    out: Path,
    client: str | None,
    warmup_steps: int,
    steps: int,
    record_shapes: bool,
    quiet: bool,
    as_json: bool,
    width: int | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND (after --) once per layout, capture and analyse each run into
    OUT/<layout>/, and compare them: throughput per device, regime per layout, the crossover.

    vLLM's own options in COMMAND are rewritten per layout (--tensor-parallel-size / -tp,
    --pipeline-parallel-size / -pp, --data-parallel-size / -dp, --enable-expert-parallel /
    -ep; '--opt N' or '--opt=N'), and added where absent for `vllm serve`, `vllm run-batch`
    and `vllm bench latency|throughput|startup`. Any other command (a Python script using
    vllm.LLM) gets the layout through tracekit's vLLM plugin, which sets it on vLLM's engine
    arguments.

    An interrupted sweep resumes where it stopped when run again: complete layouts are kept,
    an incomplete one is moved aside (OUT/<layout>.<status>.<n>) and run again. A layout that
    fails is reported with its exit code and last log line, and the sweep goes on; the exit
    status is 1 if any layout failed (130 if interrupted).

    \b
    Examples:
      tracekit sweep --layouts "tp=1,tp=2,pp=2" --out sweep1 -- python my_llm.py
      tracekit sweep --layouts "tp=2,dp=2" --out sweep2 \\
        --client "python serve_client.py --port 8000" -- vllm serve MODEL --port 8000
    """
    import shlex

    from collectors.layout import parse_layouts
    from tracekit.sweep import Options, run

    if client is not None and not shlex.split(client):
        raise click.BadParameter("empty client command", param_hint="--client")
    options = Options(
        out=out,
        layouts=parse_layouts(layouts),
        warmup_steps=warmup_steps,
        steps=steps,
        record_shapes=record_shapes,
        echo=not quiet,
        client=shlex.split(client) if client is not None else None,
    )
    result = run(options, list(command), report=_report)
    if as_json:
        from tracekit.compare import to_json

        if result.comparison is not None:
            sys.stdout.buffer.write(to_json(result.comparison) + b"\n")
        click.echo(outcome(result.record), nl=False, err=True)
        sys.exit(result.exit_status)
    colour = sys.stdout.isatty()
    from tracekit.render import resolve_width

    width = resolve_width(width, 160)
    if result.comparison is not None:
        from tracekit.render.compare import render

        click.echo(render(result.comparison, width=width, colour=colour), nl=False)
    else:
        click.echo("no layout completed: nothing to compare")
    click.echo(outcome(result.record), nl=False)
    sys.exit(result.exit_status)


__all__ = ["outcome", "sweep_command"]
