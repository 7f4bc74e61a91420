"""Public measured figures against ``tracekit plan``'s predictions (uncalibrated).

A figure (``benchmarks/plan_validation.json``) names a configuration — model (a preset with the
same shapes), weights' precision, GPU, count, layout, input / output tokens, concurrency,
engine and version, its source — and one measured metric: ``output_tok_s`` (output tokens/s,
all GPUs), ``tpot_ms`` (time per output token) or ``e2e_ms`` (a request's latency). The plan
predicts that layout at that concurrency; ``e2e_ms`` is TTFT + (output − 1) × TPOT. The error
is predicted / measured − 1.
"""

from __future__ import annotations

from pathlib import Path
from statistics import median

import msgspec

from analyzers.planning import presets, quantization
from analyzers.planning.plan import plan
from tracekit.core.errors import TracekitError
from tracekit.core.hardware import spec_by_name
from tracekit.core.layout import Layout
from tracekit.core.plan_result import LayoutPlan, Workload

METRICS = ("output_tok_s", "tpot_ms", "e2e_ms")


class Figure(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    source: str
    engine: str
    engine_version: str
    model: str
    hf_model: str
    precision: str
    gpu: str
    gpus: int
    layout: Layout
    input_tokens: int
    output_tokens: int
    concurrency: int
    metric: str
    value: float
    note: str = ""


class _File(msgspec.Struct, frozen=True):
    about: str
    figures: list[Figure]


class Checked(msgspec.Struct, frozen=True):
    figure: Figure
    predicted: float
    error: float  # predicted / measured − 1


def load(path: str | Path) -> list[Figure]:
    try:
        figures = msgspec.json.decode(Path(path).read_bytes(), type=_File).figures
    except (OSError, msgspec.DecodeError) as exc:
        raise TracekitError(path, f"unreadable validation table ({exc})") from None
    bad = [f.id for f in figures if f.metric not in METRICS or f.value <= 0]
    if bad:
        raise TracekitError(path, f"figures with an unknown metric or no value: {', '.join(bad)}")
    return figures


def predicted_layout(f: Figure) -> LayoutPlan:
    spec = quantization.with_precision(presets.model(f.model), f.precision)
    work = Workload(f.id, f.input_tokens, f.output_tokens, f.concurrency)
    rows = plan(spec, spec_by_name(f.gpu), f.gpus, work).layouts
    return next(r for r in rows if r.layout == f.layout)


def check(f: Figure) -> Checked:
    r = predicted_layout(f)
    if not r.feasible:
        raise TracekitError(None, f"{f.id}: the plan finds {f.layout.label} infeasible: {r.reason}")
    value = {
        "output_tok_s": r.tokens_per_s,
        "tpot_ms": r.tpot_ms,
        "e2e_ms": r.ttft_ms + (f.output_tokens - 1) * r.tpot_ms,
    }[f.metric]
    return Checked(f, value, value / f.value - 1)


def summary(checked: list[Checked]) -> tuple[float, float]:
    """Median and worst absolute error."""
    errors = [abs(c.error) for c in checked]
    return median(errors), max(errors)
