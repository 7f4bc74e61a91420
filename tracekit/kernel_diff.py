"""``tracekit diff A B``: which ops and kernels got slower or faster between two runs.

Each run is analysed by the one driver (``analyzers.engine.driver.analyze_ops``), which keeps
every rank's op table (``analyzers.rank.op_table``): time per op or kernel by name and the
input shapes the trace recorded (a kernel's: those of the op that launched it). Rows are
matched by (name, launching op, shape), summed over each run's ranks; where only one run
recorded shapes, by name alone (a warning says so). Each change is B − A; its share is of the
gross change (the sum of every row's |B − A|), so shares of growth and shrinkage add to 100%.
Time is what the Analysis counts as op time: device time on GPU ranks, self time on CPU ranks,
inside each run's analysed window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import msgspec

from analyzers.rank.op_table import OpTable
from tracekit.core.analysis import Analysis
from tracekit.core.version import __version__

#: 1: the first kernel diff
DIFF_SCHEMA_VERSION: Final = 1
Key = tuple[str, str, str]  # name, launching op, shape


class RunSide(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    device: Literal["gpu", "cpu"]
    ranks: int
    window_ns: int  # the analysed windows, summed over ranks
    op_ns: int  # op time, summed over ranks
    steps: int  # engine steps in the profiled window (one annotating rank per DP replica)
    shapes: bool  # whether its trace recorded input shapes


class OpChange(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    op: str  # the op that launched a kernel ("" for host ops, or where unknown)
    shape: str  # recorded input dims ("" where none, or matched by name only)
    kind: str  # kernel, memcpy, memset, cpu op
    family: str
    status: Literal["slower", "faster", "new", "gone"]
    calls_a: int
    calls_b: int
    a_ns: int
    b_ns: int
    delta_ns: int  # b − a
    change: float | None  # delta / a; None where A has no such op
    share: float  # of the gross change (Σ |delta| over every row), signed


class KernelDiff(msgspec.Struct, frozen=True, kw_only=True):
    schema_version: int = DIFF_SCHEMA_VERSION
    tracekit_version: str
    a: RunSide
    b: RunSide
    time: str  # what the times are, in words
    matched_by: Literal["name and shape", "name"]
    net_ns: int  # B's op time − A's
    gross_ns: int  # Σ |delta|
    unchanged: int  # rows present in both with the same time
    changes: list[OpChange]  # every changed row, largest |delta| first
    warnings: list[str]


def diff(a: str | Path, b: str | Path, jobs: int | None = None) -> KernelDiff:
    """Analyse both runs (bad input raises TracekitError naming the file) and diff them."""
    from analyzers.engine.driver import analyze_ops

    return build((str(a), *analyze_ops(a, jobs)), (str(b), *analyze_ops(b, jobs)))


def build(
    a: tuple[str, Analysis, Sequence[OpTable | None]],
    b: tuple[str, Analysis, Sequence[OpTable | None]],
) -> KernelDiff:
    sides = [_side(path, an, tables) for path, an, tables in (a, b)]
    by_shape = sides[0].shapes and sides[1].shapes
    rows_a, rows_b = (_rows(tables, by_shape) for _, _, tables in (a, b))
    warnings = _warnings(sides[0], sides[1])
    if sides[0].shapes != sides[1].shapes:
        which = "A" if sides[0].shapes else "B"
        warnings.append(f"only {which} recorded input shapes: ops matched by name alone")
    changes: list[tuple[Key, _Row | None, _Row | None, int]] = []
    unchanged = 0
    for key in sorted(rows_a.keys() | rows_b.keys()):
        ra, rb = rows_a.get(key), rows_b.get(key)
        delta = (rb.ns if rb else 0) - (ra.ns if ra else 0)
        if delta == 0:
            unchanged += 1
            continue
        changes.append((key, ra, rb, delta))
    gross = sum(abs(d) for *_, d in changes)
    out = [_change(key, ra, rb, delta, gross) for key, ra, rb, delta in changes]
    out.sort(key=lambda c: (-abs(c.delta_ns), c.name, c.op, c.shape))
    return KernelDiff(
        tracekit_version=__version__,
        a=sides[0],
        b=sides[1],
        time=_time_text(sides[0], sides[1]),
        matched_by="name and shape" if by_shape else "name",
        net_ns=sides[1].op_ns - sides[0].op_ns,
        gross_ns=gross,
        unchanged=unchanged,
        changes=out,
        warnings=[w for an in (a[1], b[1]) for w in an.warnings if "unreadable" in w] + warnings,
    )


class _Row:
    __slots__ = ("calls", "family", "kind", "ns")

    def __init__(self, kind: str, family: str) -> None:
        self.kind, self.family, self.calls, self.ns = kind, family, 0, 0


def _rows(tables: Sequence[OpTable | None], by_shape: bool) -> dict[Key, _Row]:
    out: dict[Key, _Row] = {}
    for t in tables:
        if t is None:
            continue
        for i in range(len(t)):
            key = (t.name[i], t.op[i], t.shape[i]) if by_shape else (t.name[i], "", "")
            row = out.setdefault(key, _Row(t.kind[i], t.family[i]))
            row.calls += int(t.count[i])
            row.ns += int(t.total_ns[i])
    return out


def _change(key: Key, ra: _Row | None, rb: _Row | None, delta: int, gross: int) -> OpChange:
    some = rb or ra
    assert some is not None
    status: Literal["slower", "faster", "new", "gone"] = (
        "new" if ra is None else "gone" if rb is None else "slower" if delta > 0 else "faster"
    )
    a_ns = ra.ns if ra else 0
    return OpChange(
        name=key[0],
        op=key[1],
        shape=key[2],
        kind=some.kind,
        family=some.family,
        status=status,
        calls_a=ra.calls if ra else 0,
        calls_b=rb.calls if rb else 0,
        a_ns=a_ns,
        b_ns=rb.ns if rb else 0,
        delta_ns=delta,
        change=round(delta / a_ns, 4) if a_ns else None,
        share=round(delta / gross, 4) if gross else 0.0,
    )


def _side(path: str, a: Analysis, tables: Sequence[OpTable | None]) -> RunSide:
    engines = {r.identity.dp: len(r.steps) for r in a.ranks if r.steps}
    return RunSide(
        path=a.run_dir or path,
        device=a.device,
        ranks=len(a.ranks),
        window_ns=sum(r.window_ns for r in a.ranks),
        op_ns=sum(int(t.total_ns.sum()) for t in tables if t is not None),
        steps=sum(engines.values()),
        shapes=any(s for t in tables if t is not None for s in t.shape),
    )


def _time_text(a: RunSide, b: RunSide) -> str:
    words = {"gpu": "device time (kernels, copies)", "cpu": "self time of host ops"}
    if a.device == b.device:
        return f"{words[a.device]}, summed over ranks"
    return f"A: {words[a.device]}; B: {words[b.device]}; summed over ranks"


def _warnings(a: RunSide, b: RunSide) -> list[str]:
    out = []
    if a.device != b.device:
        out.append(f"A ran on {a.device.upper()}, B on {b.device.upper()}: times differ in kind")
    if a.steps != b.steps:
        out.append(
            f"A's window holds {a.steps} engine step(s), B's {b.steps}: totals cover different "
            "amounts of work"
        )
    return out


_ENCODER = msgspec.json.Encoder()


def to_json(d: KernelDiff, indent: int = 2) -> bytes:
    data = _ENCODER.encode(d)
    return msgspec.json.format(data, indent=indent) if indent else data
