"""``tracekit plan``: predict every layout of N GPUs for a model and workload.

Register on the main group with ``main.add_command(plan_command)``. The command turns its
options into one library call (``analyzers.plan.plan``), then renders.
"""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Callable
from typing import Any

import click


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``tracekit.cli.guarded``, looked up at call time so cli.py may import this module."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from tracekit.cli import guarded

        return guarded(fn)(*args, **kwargs)

    return wrapper


@click.command("plan")
@click.option(
    "--model",
    "model_name",
    required=True,
    help="A preset (Llama-3.1-8B, Llama-3.1-70B, Llama-3.1-405B, Llama-3.1-405B-FP8, "
    "Qwen2.5-32B, Mixtral-8x7B, DeepSeek-R1) or a HF config.json (or its folder).",
)
@click.option("--gpu", required=True, help="GPU name: H100, H200, A100, B200, MI300X, ...")
@click.option("--gpus", required=True, type=click.IntRange(min=1), help="GPUs to lay out.")
@click.option(
    "--workload",
    "workload_text",
    default="reasoning",
    show_default=True,
    help="reasoning (1024 in / 16384 out), chat (1024 / 512) or IN:OUT[:CONCURRENCY].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON on stdout.")
@click.option("--width", default=None, type=int, help="Report width (default: terminal).")
@_guarded
def plan_command(
    model_name: str, gpu: str, gpus: int, workload_text: str, as_json: bool, width: int | None
) -> None:
    """Predict throughput, memory and regime for every DP×TP×PP(+EP) layout, ranked."""
    from analyzers import presets
    from analyzers.plan import plan
    from tracekit.hardware import spec_by_name
    from tracekit.render import plan as render_plan

    result = plan(
        presets.model(model_name), spec_by_name(gpu), gpus, presets.workload(workload_text)
    )
    if as_json:
        click.echo(render_plan.render_json(result), nl=False)
        return
    colour = sys.stdout.isatty()
    if width is None:
        width = shutil.get_terminal_size((160, 40)).columns if colour else 160
    click.echo(render_plan.render(result, width=max(width, 100), colour=colour), nl=False)


__all__ = ["plan_command"]
