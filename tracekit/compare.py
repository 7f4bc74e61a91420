"""Compare runs as a layout sweep: throughput per device, step latency, buckets, regimes.

``compare(paths)`` analyses each run; ``build(named)`` turns Analyses into one ``Comparison``
(typed, versioned JSON). Rows are ordered as a layout sweep (devices, then TP, PP, DP).
Findings say which layout is faster per device at equal device count (e.g. DP vs TP), where
the per-device leader changes between device counts (the crossover), how throughput scales
from one count to the next, and why: the buckets whose share grew in the slower run, and the
regimes. Throughput is generated (decode) tokens per second, on the basis ``BASIS_TEXT``
names: a capture's ``steps/`` where present, else the profiled step annotations. Neither
counts the first token a request gets from its prefill (``steps/`` has no prefill count).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Final, Literal

import msgspec

from analyzers.run.throughput import BASIS_TEXT, Throughput, throughput
from tracekit.compare_engine import engine_difference
from tracekit.compare_runs import label, run_names, run_warnings, same_run_warnings
from tracekit.core.analysis import Analysis, EngineWarning
from tracekit.core.buckets import BUCKET_PHRASE, BUCKETS, COMPUTE, HBM, IDLE
from tracekit.core.errors import TracekitError
from tracekit.core.layout import Layout
from tracekit.core.regime_table import MIN_DELTA
from tracekit.core.version import __version__

#: 2: a run's layout is the core Layout (None where unknown) with ``layout_source`` beside it
COMPARE_SCHEMA_VERSION: Final = 2
#: Model fields that must match for runs to count as the same workload (the name may not).
MODEL_KEYS: Final = ("architecture", "layers", "hidden_size", "heads", "kv_heads", "experts")


class RunRow(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    path: str
    layout: Layout | None  # None where neither the manifest nor the rank identities tell
    layout_source: Literal["manifest", "ranks"]
    layout_label: str
    devices: int
    device_kind: str
    ranks: int
    status: str | None
    throughput: Throughput | None
    decode_p50_ns: int | None
    decode_p90_ns: int | None
    latency_steps: str | None  # "decode", or "all" where the window has no decode-only step
    shares: dict[str, float]
    regime: str
    regime_label: str
    engine_warnings: list[EngineWarning] = msgspec.field(default_factory=list)  # vLLM's logs


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["same-devices", "crossover", "scaling"]
    devices: list[int]
    faster: str  # run names; for "scaling" faster/slower are per device
    slower: str
    ratio: float  # per-device throughput, faster / slower
    bucket: str | None  # the bucket whose share grew most in the slower run
    faster_share: float | None
    slower_share: float | None
    regimes: list[str]  # [faster's, slower's]
    text: str
    engine_slower_only: list[str] = msgspec.field(default_factory=list)  # vLLM warning kinds
    engine_faster_only: list[str] = msgspec.field(default_factory=list)


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    schema_version: int = COMPARE_SCHEMA_VERSION
    tracekit_version: str
    bases: dict[str, str]
    runs: list[RunRow]
    findings: list[Finding]
    warnings: list[str]


def compare(paths: Sequence[str | Path]) -> Comparison:
    """Analyse each run (bad input raises TracekitError naming it) and compare them."""
    from tracekit import analyze

    names = run_names([str(p) for p in paths])
    got = build([(name, analyze(path)) for name, path in zip(names, paths, strict=True)])
    same = same_run_warnings(names, paths)
    return msgspec.structs.replace(got, warnings=[*same, *got.warnings]) if same else got


def build(named: Sequence[tuple[str, Analysis]]) -> Comparison:
    rows = sorted((row(name, a) for name, a in named), key=sweep_key)
    warnings = [
        f"{r.name}: run status {r.status}" for r in rows if r.status not in (None, "complete")
    ]
    warnings += run_warnings(named)
    warnings += _workload_warnings(rows, [a for _, a in named])
    bases = {r.throughput.basis for r in rows if r.throughput}
    if len(bases) > 1:
        warnings.append("throughput bases differ across runs: per-device figures are approximate")
    warnings += [
        f"{r.name}: no throughput (no step records or annotations)"
        for r in rows
        if not r.throughput
    ]
    return Comparison(
        tracekit_version=__version__,
        bases={b: BASIS_TEXT[b] for b in sorted(bases)},
        runs=rows,
        findings=findings(rows),
        warnings=warnings,
    )


def sweep_key(r: RunRow) -> tuple[int, int, int, int, int, str]:
    lay = r.layout or Layout(0, 0, 0, 0)
    return (r.devices, lay.tp, lay.pp, lay.dp, lay.ep, r.name)


def family(r: RunRow) -> str:
    """The run's dominant parallelism (``Layout.family``; ``?`` where unknown)."""
    return r.layout.family if r.layout else "?"


def row(name: str, a: Analysis) -> RunRow:
    layout, source = _layout(a)
    devices = len(a.ranks)
    if layout is not None:
        devices = max(devices, layout.devices)
    devices = max([devices, *(r.identity.world_size or 0 for r in a.ranks)])
    window = sum(r.window_ns for r in a.ranks)
    shares = {k: (sum(r.buckets[k] for r in a.ranks) / window if window else 0.0) for k in BUCKETS}
    stats = {s.kind: s for s in a.step_stats}
    latency = stats.get("decode") or stats.get("all")
    return RunRow(
        name=name,
        path=a.run_dir or a.source,
        layout=layout,
        layout_source=source,
        layout_label=layout.label if layout else "?",
        devices=devices,
        device_kind=_device_kind(a),
        ranks=len(a.ranks),
        status=(a.manifest or {}).get("status"),
        throughput=throughput(a, devices),
        decode_p50_ns=latency.p50_ns if latency else None,
        decode_p90_ns=latency.p90_ns if latency else None,
        latency_steps=latency.kind if latency else None,
        shares=shares,
        regime=a.regime.name,
        regime_label=a.regime.label,
        engine_warnings=list(a.engine_warnings),
    )


def _layout(a: Analysis) -> tuple[Layout | None, Literal["manifest", "ranks"]]:
    """The manifest's layout (DP/TP/PP raised where the ranks show more; vLLM names ranks by
    their EP group even without expert parallelism), else the rank identities."""

    def degree(values: Iterable[int | None]) -> int | None:
        seen = list(values)
        return None if any(v is None for v in seen) else len(set(seen))

    ids = [r.identity for r in a.ranks]
    got = {k: degree(getattr(i, k) for i in ids) for k in ("dp", "tp", "pp", "ep")}
    if all(i.ep is None for i in ids):
        got["ep"] = 1
    manifest = (a.manifest or {}).get("layout")
    if isinstance(manifest, dict):
        known = {
            k: max(int(manifest.get(k, 1)), (v or 1) if k != "ep" else 1) for k, v in got.items()
        }
        return Layout(**known), "manifest"
    if any(v is None for v in got.values()):
        return None, "ranks"
    return Layout(**{k: v or 1 for k, v in got.items()}), "ranks"


def _device_kind(a: Analysis) -> str:
    names = sorted({n.removeprefix("NVIDIA ") for r in a.ranks for n in r.device_names if n})
    if names:
        return ", ".join(names)
    if a.device == "gpu":
        return "gpu"
    cpu = ((a.manifest or {}).get("hardware") or {}).get("cpu_model")
    return f"cpu ({cpu})" if cpu else "cpu"


def _workload_warnings(rows: list[RunRow], analyses: list[Analysis]) -> list[str]:
    out = []
    models = {
        tuple((k, m.get(k)) for k in MODEL_KEYS)
        for a in analyses
        if isinstance(m := (a.manifest or {}).get("model"), dict)
    }
    if len(models) > 1:
        out.append("runs use different model configurations: not a like-for-like sweep")
    counted = [(r.name, r.throughput.tokens) for r in rows if r.throughput]
    if len({t for _, t in counted}) > 1:
        listed = ", ".join(f"{n} {t}" for n, t in counted)
        out.append(f"runs generated different token counts ({listed}): check they ran one workload")
    return out


# --- findings --------------------------------------------------------------------------------


def rate(r: RunRow) -> float:
    return r.throughput.tokens_per_s if r.throughput else 0.0


def per_device(r: RunRow) -> float:
    return r.throughput.tokens_per_s_per_device if r.throughput else 0.0


def findings(rows: Sequence[RunRow]) -> list[Finding]:
    """Same-device pairs (leader vs each other), leader changes, and scaling between counts."""
    measured = [r for r in rows if r.throughput]
    counts = sorted({r.devices for r in measured})
    leaders: dict[int, RunRow] = {}
    out: list[Finding] = []
    for n in counts:
        group = sorted(
            (r for r in measured if r.devices == n), key=lambda r: (-per_device(r), sweep_key(r))
        )
        lead = leaders[n] = group[0]
        for other in group[1:]:
            head = (
                f"at {n} device(s) {lead.layout_label} ({lead.name}) is {_ratio(lead, other)} "
                f"{other.layout_label} ({other.name}) per device ({per_device(lead):,.1f} vs "
                f"{per_device(other):,.1f} tok/s/device)"
            )
            out.append(_finding("same-devices", [n], lead, other, head))
    contested = [n for n in counts if sum(r.devices == n for r in measured) > 1]
    for lo, hi in pairwise(contested):  # the per-device leader's family changes
        before, after = leaders[lo], leaders[hi]
        if family(before) == family(after):
            continue
        same = [r for r in measured if r.devices == hi and family(r) == family(before)]
        loser = same[0] if same else before
        head = (
            f"crossover: {family(before)} leads per device at {lo} device(s) "
            f"({before.layout_label}), {family(after)} overtakes at {hi} device(s) "
            f"({after.layout_label}, {_ratio(after, loser)} {loser.layout_label})"
        )
        out.append(_finding("crossover", [lo, hi], after, loser, head))
    for lo, hi in pairwise(counts):  # from the best at one count to the best at the next
        small, large = leaders[lo], leaders[hi]
        speedup = rate(large) / rate(small)
        faster, slower = (
            (small, large) if per_device(small) >= per_device(large) else (large, small)
        )
        head = (
            f"scaling {lo} → {hi} device(s): {label(large, small)} gives {speedup:.2f}× the "
            f"throughput of {label(small, large)} ({speedup * lo / hi:.0%} per-device "
            f"efficiency); per device {label(faster, slower)} is faster "
            f"({_ratio(faster, slower)})"
        )
        out.append(_finding("scaling", [lo, hi], faster, slower, head))
    return out


def _ratio(a: RunRow, b: RunRow) -> str:
    return f"{per_device(a) / per_device(b):.2f}×"


def _finding(
    kind: Literal["same-devices", "crossover", "scaling"],
    devices: list[int],
    faster: RunRow,
    slower: RunRow,
    head: str,
) -> Finding:
    """Why ``slower`` is slower: the buckets whose share grew most, overheads (collectives,
    bubbles, routing, KV stalls, host) before kernel time and idle last; and the regimes."""
    deltas = sorted(
        ((slower.shares[k] - faster.shares[k], k) for k in BUCKETS),
        key=lambda d: (d[1] == IDLE, d[1] in (COMPUTE, HBM), -d[0]),
    )
    grown = [k for d, k in deltas if d >= MIN_DELTA][:2]
    why = f"{label(slower, faster)} spends " + ", ".join(
        f"{slower.shares[k]:.1%} in {BUCKET_PHRASE[k]} vs {label(faster, slower)} "
        f"{faster.shares[k]:.1%}"
        for k in grown
    )
    if not grown:
        why = f"no bucket share differs by {MIN_DELTA:.0%} or more"
    same = faster.regime == slower.regime
    why += f"; both {faster.regime}" if same else f"; regime {slower.regime} vs {faster.regime}"
    bucket = grown[0] if grown else None
    slow_only, fast_only, said = engine_difference(faster, slower)
    return Finding(
        kind=kind,
        devices=devices,
        faster=faster.name,
        slower=slower.name,
        ratio=round(per_device(faster) / per_device(slower), 4),
        bucket=bucket,
        faster_share=faster.shares[bucket] if bucket else None,
        slower_share=slower.shares[bucket] if bucket else None,
        regimes=[faster.regime, slower.regime],
        text=f"{head}: {why}" + (f"; {said}" if said else ""),
        engine_slower_only=slow_only,
        engine_faster_only=fast_only,
    )


_ENCODER = msgspec.json.Encoder()


def to_json(comparison: Comparison, indent: int = 2) -> bytes:
    data = _ENCODER.encode(comparison)
    return msgspec.json.format(data, indent=indent) if indent else data


def from_json(data: bytes, where: str | None = None) -> Comparison:
    """Read a comparison back: another schema_version or a mismatch is a TracekitError."""
    try:
        got = msgspec.json.decode(data, type=Comparison)
    except msgspec.DecodeError as exc:
        raise TracekitError(where, f"not a tracekit comparison ({exc})") from None
    if got.schema_version != COMPARE_SCHEMA_VERSION:
        raise TracekitError(where, f"comparison schema_version {got.schema_version}")
    return got
