"""The click CLI: each command turns options into one library call, then renders."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import click

from tracekit.cli_common import fail, guarded, jobs_option, top_option, width_option
from tracekit.core.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracekit")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
def main(verbose: int) -> None:
    """Profile and analyse LLM inference runs (vLLM): where the time went, and why."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the Analysis as JSON on stdout.")
@top_option(12, "Rows in the top-ops table.")
@width_option
@jobs_option
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ADDRESS]",
    help="Analyse each rank as a Ray task, on the node holding its trace (needs "
    "tracekit[ray]). ADDRESS joins a cluster (auto, host:port, ray://...); without it a "
    "local Ray instance runs for the analysis.",
)
@click.option(
    "--whole-window",
    is_flag=True,
    help="Analyse the whole profiled window, warm-up, ramp and drain included (default: the "
    "steady window, chosen from the engine steps' batch, prefill/decode mix and step time).",
)
@guarded
def analyze(
    path: Path | None,
    as_json: bool,
    top: int,
    width: int | None,
    jobs: int | None,
    ray_address: str | None,
    whole_window: bool,
) -> None:
    """Analyse a trace file, a folder of per-rank traces, or a run directory: over its steady
    window (after warm-up and ramp, before drain) where its engine steps show one, else over
    the whole profiled window; the report says which and why."""
    from tracekit.progress import progress_bar

    if path is None and ray_address and Path(ray_address).exists():
        path, ray_address = Path(ray_address), ""  # `--ray PATH`: the value was the path
    if path is None:
        raise click.UsageError("Missing argument 'PATH'.")
    if ray_address is not None and jobs is not None:
        raise click.UsageError("--ray and --jobs do not combine: Ray schedules the ranks")
    with progress_bar(enabled=sys.stderr.isatty()) as progress:
        if ray_address is None:
            from analyzers.engine.driver import analyze as run_analysis

            analysis = run_analysis(path, progress=progress, jobs=jobs, whole_window=whole_window)
        else:
            from analyzers.engine.ray_executor import analyze_ray

            analysis = analyze_ray(
                path, ray_address or None, progress=progress, whole_window=whole_window
            )
    if as_json:
        from tracekit.render.json import render as render_json

        sys.stdout.buffer.write(render_json(analysis))
        return
    from tracekit.render import resolve_width
    from tracekit.render.console import render as render_console

    colour = sys.stdout.isatty()
    width = resolve_width(width, 120)
    click.echo(render_console(analysis, width=width, colour=colour, top=top), nl=False)


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Run directory to create (never overwritten).",
)
@click.option(
    "--warmup-steps",
    default=5,
    show_default=True,
    help="Engine steps to skip before the profiled window.",
)
@click.option("--steps", default=20, show_default=True, help="Engine steps to profile.")
@click.option(
    "--nvtx-only",
    is_flag=True,
    help="No torch.profiler: only NVTX ranges and step stats (for nsys profile).",
)
@click.option(
    "--nsys",
    is_flag=True,
    help="Run the command under Nsight Systems (nsys on PATH); the window drives its capture "
    "range through the CUDA profiler API, and the export lands in traces/.",
)
@click.option("--record-shapes", is_flag=True, help="Record op input shapes (larger traces).")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="The command's output goes to the run's logs/ only; on a terminal, a status line "
    "(elapsed time, engine steps, window, ranks with traces) shows instead.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@guarded
def capture(
    out: Path,
    warmup_steps: int,
    steps: int,
    nvtx_only: bool,
    nsys: bool,
    record_shapes: bool,
    quiet: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND (after --) unchanged and record every vLLM rank into a run directory.

    Example: tracekit capture --out run1 -- vllm serve MODEL --tensor-parallel-size 2
    """
    from collectors.capture import CommandNotFoundError, run_command
    from collectors.settings import Settings
    from tracekit.render import capture as talk

    settings = Settings(
        run_dir=out,
        mode="nsys" if nsys else "nvtx" if nvtx_only else "full",
        warmup_steps=warmup_steps,
        steps=steps,
        record_shapes=record_shapes,
    )

    live = contextlib.ExitStack()

    def started(argv: list[str]) -> None:
        line = talk.start_line(out, argv, settings.mode, warmup_steps, steps)
        click.echo(line, err=True)
        status = talk.live_status(out, warmup_steps, steps, enabled=quiet and sys.stderr.isatty())
        live.enter_context(status)

    try:
        with live:
            outcome = run_command(settings, list(command), started=started, quiet=quiet)
    except CommandNotFoundError as exc:
        fail(str(exc), exc.exit_code)
        return
    summary = talk.summarize(out)
    click.echo(talk.render(summary, colour=sys.stderr.isatty()), err=True, nl=False)
    line = talk.exit_line(outcome.status, outcome.signal_name)
    if line:
        click.echo(line, err=True)
    sys.exit(outcome.status)


def _register() -> None:
    from tracekit.cli_compare import compare_command
    from tracekit.cli_diff import diff_command
    from tracekit.cli_doctor import doctor_command
    from tracekit.cli_export import export_command, open_command
    from tracekit.cli_hw import hw_command
    from tracekit.cli_plan import plan_command
    from tracekit.cli_sweep import sweep_command

    main.add_command(export_command)
    main.add_command(open_command)
    main.add_command(compare_command)
    main.add_command(diff_command)
    main.add_command(hw_command)
    main.add_command(sweep_command)
    main.add_command(plan_command)
    main.add_command(doctor_command)


_register()

if __name__ == "__main__":
    main()
