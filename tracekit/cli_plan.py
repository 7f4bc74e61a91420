"""``tracekit plan``: predict every layout of N GPUs for a model and workload.

Register on the main group with ``main.add_command(plan_command)``. The command turns its
options into library calls (``analyzers.planning.calibration.calibrate`` with ``--calibrate``, then
``analyzers.planning.plan.plan``), then renders.
"""

from __future__ import annotations

import sys

import click
import msgspec

from tracekit.cli_common import guarded, width_option
from tracekit.core.errors import TracekitError


@click.command("plan")
@click.argument("runs", nargs=-1, type=click.Path())
@click.option(
    "--calibrate",
    is_flag=True,
    help="Fit the cost model's efficiencies and overheads to the captured RUNS (tracekit "
    "run directories); model, device and workload default to what the runs say.",
)
@click.option(
    "--model",
    "model_name",
    default=None,
    help="A preset (Llama-3.1-8B, Llama-3.1-70B, Llama-3.1-405B, Llama-3.1-405B-FP8, "
    "Qwen2.5-32B, Mixtral-8x7B, DeepSeek-R1) or a HF config.json (or its folder).",
)
@click.option("--gpu", default=None, help="GPU name: H100, H200, A100, B200, MI300X, ...")
@click.option("--gpus", default=None, type=click.IntRange(min=1), help="GPUs (devices) to lay out.")
@click.option(
    "--workload",
    "workload_text",
    default=None,
    help="reasoning (1024 in / 16384 out), chat (1024 / 512) or IN:OUT[:CONCURRENCY]; "
    "default: reasoning, or the runs' with --calibrate.",
)
@click.option("-j", "--jobs", default=None, type=click.IntRange(min=1), help="Analysis processes.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON on stdout.")
@width_option
@guarded
def plan_command(
    runs: tuple[str, ...],
    calibrate: bool,
    model_name: str | None,
    gpu: str | None,
    gpus: int | None,
    workload_text: str | None,
    jobs: int | None,
    as_json: bool,
    width: int | None,
) -> None:
    """Predict throughput, memory and regime for every DP×TP×PP(+EP) layout, ranked.

    With --calibrate RUN..., the cost model is first fitted to the captured runs and the
    report states its prediction error on them."""
    from analyzers.planning import presets
    from analyzers.planning.plan import plan
    from tracekit.core.hardware import spec_by_name
    from tracekit.render import plan as render_plan
    from tracekit.render import resolve_width

    if runs and not calibrate:
        raise TracekitError(runs[0], "run directories are read only with --calibrate")
    cal = None
    if calibrate:
        from analyzers.planning.calibration import calibrate as fit

        cal = fit(runs, jobs=jobs)
    missing = [o for o, v in (("--model", model_name), ("--gpu", gpu), ("--gpus", gpus)) if not v]
    if cal is None and missing:
        raise TracekitError(None, f"plan needs {', '.join(missing)} (or --calibrate RUN...)")
    spec = presets.model(model_name) if model_name else cal.model if cal else None
    device = spec_by_name(gpu) if gpu else cal.device if cal else None
    count = gpus or (max(r.devices for r in cal.runs) if cal else 1)
    work = (
        presets.workload(workload_text)
        if workload_text
        else cal.workload
        if cal
        else presets.workload("reasoning")
    )
    assert spec is not None and device is not None
    costs = cal.costs if cal else None
    if costs is not None and device.memory_bytes is not None:
        costs = msgspec.structs.replace(
            costs, kv_cache_bytes=None
        )  # the memory model sizes the KV cache
    result = (
        plan(spec, device, count, work) if costs is None else plan(spec, device, count, work, costs)
    )
    if as_json:
        click.echo(render_plan.render_json(result, cal), nl=False)
        return
    colour = sys.stdout.isatty()
    width = resolve_width(width, 160)
    click.echo(render_plan.render(result, width=width, colour=colour, calibration=cal), nl=False)


__all__ = ["plan_command"]
