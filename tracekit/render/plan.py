"""``tracekit plan`` output: the ranked layouts as a table, or as JSON."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracekit.core.plan_result import Calibration, Plan, PlanReport, to_json
from tracekit.core.version import __version__
from tracekit.render import fit, text_console
from tracekit.render.console import SHORT

DROP_ORDER = ("act GB", "weights GB", "max seqs", "tok/s", "KV GB/dev", "TTFT ms", "conc")

#: what every column and regime means, printed under the table
CAPTION = (
    "A round is one decode step of every running sequence (PP: all micro-batches), each "
    "sequence making one token; the prefill of requests finishing in it is spread over it. "
    "weights / act / KV GB/dev: memory per GPU; max seqs: sequences one replica's KV cache "
    "holds at the mean context; batch: sequences each replica runs; conc: in flight over all "
    "replicas (batch × DP); TTFT: prefill of one prompt through the stages plus one round; "
    "TPOT = round ms; tok/s, tok/s/dev: output tokens per second, all GPUs and per GPU; "
    "round shares: the round's time by bucket (comp: compute-bound GEMMs, hbm: HBM-bound "
    "reads, coll: exposed TP all-reduces, rout: MoE dispatch/combine, bubl: PP idle, host: "
    "host overhead). Regime: capacity-bound where the KV cache holds under 80% of the batch "
    "asked for (the capacity trap: DP replicas throttled by KV pressure), else the largest "
    "share's: compute-, hbm-, interconnect-, routing-, bubble- or host-bound."
)


def report(plan: Plan, calibration: Calibration | None = None) -> PlanReport:
    """The plan as its published result (``tracekit.core.plan_result``): one entry per layout,
    best first, with the calibration it was made from, if any."""
    best = plan.best
    return PlanReport(
        tracekit_version=__version__,
        model=plan.model,
        gpu=plan.gpu,
        gpus=plan.gpus,
        workload=plan.workload,
        mean_context=plan.workload.mean_context,
        best=best.label if best else None,
        layouts=plan.layouts,
        notes=plan.notes,
        weights=plan.weights,
        kv=plan.kv,
        compute=plan.compute,
        slo=plan.slo,
        suggestions=plan.suggestions,
        calibration=calibration,
    )


def render_json(plan: Plan, calibration: Calibration | None = None) -> str:
    return to_json(report(plan, calibration)).decode() + "\n"


def render(
    plan: Plan, width: int = 160, colour: bool = False, calibration: Calibration | None = None
) -> str:
    console, buffer = text_console(width, colour)
    if calibration is not None:
        _calibration(console, calibration)
    title = f"tracekit plan: {plan.model} on {plan.gpus}× {plan.gpu}, {plan.workload.describe()}"
    if plan.weights:
        title += f"; weights {plan.weights}, KV {plan.kv}"
    console.print(Text(title, style="bold"))
    dropped: list[str] = []
    t = _layouts(plan, dropped)
    for header in DROP_ORDER:  # narrow terminals: the least telling columns go first
        if fit(console, t):
            break
        dropped.append(header)
        t = _layouts(plan, dropped)
    best = plan.best
    if best:
        fit(console, t)
        console.print(t)
        if dropped:
            console.print(Text(f"left out to fit the width: {', '.join(dropped)}", style="italic"))
        console.print(Text(CAPTION, style="italic"))
        runners = ", ".join(f"{k} {v:.0%}" for k, v in best.scores.items() if k != best.regime)
        console.print(
            Text(
                f"best per device: {best.layout.label}, {best.per_device:,.0f} tok/s per device "
                f"at {best.concurrency} in flight (TTFT {best.ttft_ms:,.0f} ms, TPOT "
                f"{best.tpot_ms:,.1f} ms), {best.regime} ({best.scores.get(best.regime, 0):.0%}; "
                f"{runners})",
                style="bold",
            )
        )
    else:
        what = f"meets {plan.slo.describe()}" if plan.slo else "fits"
        console.print(
            Text(
                f"nothing {what}: no layout of {plan.gpus}× {plan.gpu} (reasons below)",
                style="bold red",
            )
        )
        for hint in plan.suggestions:
            console.print(Text(f"would fit: {hint}", style="bold"))
    for r in plan.layouts:
        if not r.feasible:
            console.print(Text(f"infeasible {r.layout.label}: {r.reason}"))
    for note in plan.notes:
        console.print(Text(f"note: {note}", style="italic"))
    return buffer.getvalue()


def _layouts(plan: Plan, dropped: list[str]) -> Table:
    """The feasible layouts, best first, without the ``dropped`` columns."""
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    headers = ("#", "layout", "weights GB", "act GB", "KV GB/dev", "max seqs", "batch", "conc",
               "TTFT ms", "TPOT ms", "tok/s", "tok/s/dev", "regime", "round shares")  # fmt: skip
    keep = [h not in dropped for h in headers]
    for header, kept in zip(headers, keep, strict=True):
        if kept:
            left = header in ("layout", "regime", "round shares")
            t.add_column(
                header,
                justify="left" if left else "right",
                overflow="fold" if header in ("regime", "round shares") else "ellipsis",
            )
    feasible = [r for r in plan.layouts if r.feasible]
    for rank, r in enumerate(feasible, 1):
        shares = " ".join(
            f"{SHORT.get(k, k)} {v:.0%}" for k, v in sorted(r.shares.items(), key=lambda kv: -kv[1])
            if v >= 0.01
        )  # fmt: skip
        cells = (
            str(rank), r.layout.label, f"{r.weights_gb:,.1f}", f"{r.activations_gb:.1f}",
            f"{r.kv_gb:,.1f}", f"{r.max_seqs:,}", f"{r.batch:,}", f"{r.concurrency:,}",
            f"{r.ttft_ms:,.0f}", f"{r.tpot_ms:,.1f}", f"{r.tokens_per_s:,.0f}",
            f"{r.per_device:,.0f}", r.regime, shares,
        )  # fmt: skip
        t.add_row(*(c for c, kept in zip(cells, keep, strict=True) if kept))
    return t


def _calibration(console: Console, cal: Calibration) -> None:
    n = len(cal.runs)
    console.print(Text(f"tracekit plan: calibrated on {n} run(s) of {cal.model.name} on "
                       f"{cal.device.name}", style="bold"))  # fmt: skip
    for name, text in cal.evidence.items():
        console.print(Text(f"  {name} = {text}"))
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for header in ("run", "layout", "batch", "kernel eff", "coll ms/step", "host ms/step"):
        t.add_column(header, justify="left" if header in ("run", "layout") else "right")
    for header in ("tok/s measured", "predicted", "error", "round ms measured", "predicted"):
        t.add_column(header, justify="right")
    t.add_column("error", justify="right")
    for r in cal.runs:
        eff = f"{r.kernel_efficiency:.1%}" if r.kernel_efficiency is not None else "-"
        t.add_row(
            r.name, r.layout, f"{r.batch:.1f}", eff, f"{r.collective_ms:.3f}",
            f"{r.host_ms:.3f}", f"{r.measured_tokens_per_s:,.0f}",
            f"{r.predicted_tokens_per_s:,.0f}", f"{r.error:+.1%}", f"{r.measured_round_ms:.3f}",
            f"{r.predicted_round_ms:.3f}", f"{r.round_error:+.1%}",
        )  # fmt: skip
    fit(console, t)
    console.print(t)
    console.print(
        Text(
            f"prediction error on the {n} calibration run(s): throughput mean |error| "
            f"{cal.mean_abs_error:.1%}, max {cal.max_abs_error:.1%}",
            style="bold",
        )
    )
    for note in cal.notes:
        console.print(Text(f"note: {note}", style="italic"))
    console.print()
