"""``tracekit plan``: predict every layout of N GPUs for a model and workload.

Register on the main group with ``main.add_command(plan_command)``. The command turns its
options into library calls (``analyzers.planning.calibration.calibrate`` with ``--calibrate``, then
``analyzers.planning.suggest.planned``), then renders. Nothing fits (or meets ``--slo``): the
report says why and what would, and the exit status is 1.
"""

from __future__ import annotations

import sys

import click
import msgspec

from tracekit.cli_common import guarded, width_option
from tracekit.core.errors import TracekitError

EXIT_NOTHING_FITS = 1
NODES_HELP = (
    "GPUs one node's fast link joins (default: the GPU's board, 8; GB200 72); beyond it PP and "
    "DP cross nodes over the inter-node link."
)
PRECISION = click.Choice(["bf16", "fp16", "fp8", "int8", "int4"], case_sensitive=False)


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
    "Qwen2.5-32B, Mixtral-8x7B, DeepSeek-R1), a HF config.json (or its folder), or a HF id "
    "in the local Hugging Face cache (org/name; config.json only, never downloaded).",
)
@click.option(
    "--dtype",
    default=None,
    type=PRECISION,
    help="Weights' precision (default: the config's torch_dtype / quantization_config).",
)
@click.option(
    "--kv-dtype", default=None, type=PRECISION, help="KV cache precision (default: as vLLM's auto)."
)
@click.option(
    "--gpu",
    default=None,
    help="GPU name: H100, H200, H20, A100, B200, B300, GB200, L40S, L4, MI300X, MI325X, "
    "MI355X, ...",
)
@click.option(
    "--gpu-spec",
    default=None,
    type=click.Path(),
    help="A JSON file of the GPU's figures (FLOP/s per precision, HBM bandwidth and bytes, "
    "link bandwidth and latency); instead of --gpu.",
)
@click.option("--gpus", default=None, type=click.IntRange(min=1), help="GPUs (devices) to lay out.")
@click.option("--gpus-per-node", type=click.IntRange(min=1), help=NODES_HELP)
@click.option("--tp-across-nodes", is_flag=True, help="Let TP groups span nodes.")
@click.option(
    "--slo",
    "slo_text",
    default=None,
    help="Latency targets, e.g. ttft=2s,tpot=50ms: rank only the layouts meeting them, each at "
    "the highest concurrency that does.",
)
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
    dtype: str | None,
    kv_dtype: str | None,
    gpu: str | None,
    gpu_spec: str | None,
    gpus: int | None,
    gpus_per_node: int | None,
    tp_across_nodes: bool,
    slo_text: str | None,
    workload_text: str | None,
    jobs: int | None,
    as_json: bool,
    width: int | None,
) -> None:
    """Predict throughput, memory and regime for every DP×TP×PP(+EP) layout, ranked.

    With --calibrate RUN..., the cost model is first fitted to the captured runs and the
    report states its prediction error on them."""
    from analyzers.planning import presets, quantization, suggest
    from analyzers.planning.plan import DEFAULT_COSTS
    from analyzers.planning.slo import parse
    from tracekit.core import plan_gpu
    from tracekit.core.hardware import spec_by_name
    from tracekit.render import plan as render_plan
    from tracekit.render import resolve_width

    if runs and not calibrate:
        raise TracekitError(runs[0], "run directories are read only with --calibrate")
    if gpu and gpu_spec:
        raise TracekitError(gpu_spec, "give --gpu or --gpu-spec, not both")
    slo = parse(slo_text) if slo_text else None
    cal = None
    if calibrate:
        from analyzers.planning.calibration import calibrate as fit

        cal = fit(runs, jobs=jobs)
    named = gpu or gpu_spec
    missing = [o for o, v in (("--model", model_name), ("--gpu", named), ("--gpus", gpus)) if not v]
    if cal is None and missing:
        raise TracekitError(None, f"plan needs {', '.join(missing)} (or --calibrate RUN...)")
    spec = presets.model(model_name) if model_name else cal.model if cal else None
    assert spec is not None
    if dtype or kv_dtype:
        spec = quantization.with_precision(
            spec, dtype and dtype.lower(), kv_dtype and kv_dtype.lower()
        )
    device = (
        plan_gpu.load(gpu_spec)
        if gpu_spec
        else plan_gpu.builtin(spec_by_name(gpu))
        if gpu
        else cal.device
        if cal
        else None
    )
    assert device is not None
    count = gpus or (max(r.devices for r in cal.runs) if cal else 1)
    work = (
        presets.workload(workload_text)
        if workload_text
        else cal.workload
        if cal
        else presets.workload("reasoning")
    )
    costs = cal.costs if cal else DEFAULT_COSTS
    memory = (
        device.spec.memory_bytes if isinstance(device, plan_gpu.PlanGpu) else device.memory_bytes
    )
    if cal is not None and memory is not None:
        costs = msgspec.structs.replace(costs, kv_cache_bytes=None)  # the memory model sizes it
    result = suggest.planned(
        spec, device, count, work, slo, costs=costs, gpus_per_node=gpus_per_node,
        tp_across_nodes=tp_across_nodes,
    )  # fmt: skip
    if as_json:
        click.echo(render_plan.render_json(result, cal), nl=False)
    else:
        colour = sys.stdout.isatty()
        width = resolve_width(width, 160)
        click.echo(
            render_plan.render(result, width=width, colour=colour, calibration=cal), nl=False
        )
    if result.best is None:
        sys.exit(EXIT_NOTHING_FITS)


__all__ = ["plan_command"]
