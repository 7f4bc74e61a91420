"""The comparison in the terminal: the sweep table, a per-device throughput chart, findings."""

from __future__ import annotations

from rich import box
from rich.bar import Bar
from rich.table import Table
from rich.text import Text

from tracekit.compare import Comparison, RunRow, per_device
from tracekit.core.buckets import BUCKETS
from tracekit.render import bullets, fit, text_console
from tracekit.render.console import COLOURS, SHORT

BAR_WIDTH = 40
BASIS_MARK = {"engine": "", "profile": "*"}


def render(comparison: Comparison, width: int = 160, colour: bool = False) -> str:
    console, buffer = text_console(width, colour)
    console.print(Text(f"tracekit compare: {len(comparison.runs)} run(s)", style="bold"))
    dropped: list[str] = []
    sweep = table(comparison)
    for header in DROP_ORDER:  # narrow terminals: whole columns go, never parts of cells
        if fit(console, sweep):
            break
        dropped.append(header)
        sweep = table(comparison, dropped)
    console.print(sweep)
    console.print(Text(_legend(comparison), style="italic"))
    if dropped:
        left_out = ", ".join(dropped)
        console.print(Text(f"left out to fit the width: {left_out}", style="italic"))
    for basis, text in comparison.bases.items():
        mark = BASIS_MARK[basis]
        which = f"figures marked {mark}" if mark else "unmarked figures"
        which = "" if len(comparison.bases) == 1 else f" ({which})"
        console.print(Text(f"throughput basis{which}: {text}"))
    for bar_width in (BAR_WIDTH, 30, 20, 12):  # the bar shrinks before a label is cut
        bars = chart(comparison, bar_width)
        if fit(console, bars):
            break
    console.print(bars)
    if comparison.findings:
        console.print(
            bullets(
                [
                    Text(f.text, style="bold" if f.kind != "scaling" else "")
                    for f in comparison.findings
                ],
                indent=0,
            )
        )
    said = engine_said(comparison)
    if said:
        console.print(Text(said))
    for warning in comparison.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    return buffer.getvalue()


def engine_said(comparison: Comparison) -> str:
    """Each run's vLLM warning kinds (its logs/), where any run logged one and they differ."""
    kinds = [[w.kind.replace("_", " ") for w in r.engine_warnings] for r in comparison.runs]
    if not any(kinds) or all(k == kinds[0] for k in kinds):
        return ""
    listed = "; ".join(
        f"{r.name}: {', '.join(k) or 'none'}" for r, k in zip(comparison.runs, kinds, strict=True)
    )
    return f"vLLM said (logs/: fallbacks and features off): {listed}"


def _ms(ns: int | None) -> str:
    return "—" if ns is None else f"{ns / 1e6:,.2f}"


#: The sweep table's columns in the order they are left out when the width is short (the
#: regime also stands in the chart below; the run name and the per-device rate stay).
DROP_ORDER = ("p90 ms", "regime", "tok/s", "p50 ms", "idle%", "devices", "layout")


def table(comparison: Comparison, dropped: list[str] | None = None) -> Table:
    """The sweep table, without the ``dropped`` columns (headers as in ``DROP_ORDER``)."""
    kinds = {r.device_kind for r in comparison.runs}
    same_kind = len(kinds) == 1
    t = Table(
        title="Layout sweep (ordered by devices, then TP, PP, DP)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    shown = [b for b in BUCKETS if any(r.shares[b] for r in comparison.runs)]  # drop all-zero
    gone = set(dropped or ())
    columns: list[tuple[str, dict[str, object]]] = [
        ("run", {"overflow": "fold", "min_width": 6}),
        ("layout", {"overflow": "fold", "min_width": 6}),
        (
            "devices",
            {"overflow": "fold", "min_width": 7, "justify": "right" if same_kind else "left"},
        ),
        *(
            (h, {"justify": "right", "no_wrap": True, "min_width": w})
            for h, w in (("tok/s", 8), ("tok/s/dev", 8), ("p50 ms", 6), ("p90 ms", 6))
        ),
        *(
            (
                f"{SHORT.get(b, b)}%",
                {"justify": "right", "style": COLOURS[b], "min_width": len(f"{SHORT.get(b, b)}%")},
            )
            for b in shown
        ),
        ("regime", {"overflow": "fold", "min_width": 10}),
    ]
    keep = [header not in gone for header, _ in columns]
    for (header, options), kept in zip(columns, keep, strict=True):
        if kept:
            t.add_column(header, **options)  # type: ignore[arg-type]
    leader = max(comparison.runs, key=per_device, default=None)
    for r in comparison.runs:
        tp = r.throughput
        mark = BASIS_MARK[tp.basis] if tp else ""
        cells: list[str | Text] = [
            r.name,
            r.layout_label,
            str(r.devices) if same_kind else f"{r.devices} × {r.device_kind}",
            f"{tp.tokens_per_s:,.1f}{mark}" if tp else "—",
            Text(
                f"{tp.tokens_per_s_per_device:,.1f}{mark}" if tp else "—",
                style="bold" if r is leader and tp else "",
            ),
            _ms(r.decode_p50_ns),
            _ms(r.decode_p90_ns),
            *(f"{r.shares[b] * 100:.1f}" for b in shown),
            r.regime,
        ]
        t.add_row(*(c for c, kept in zip(cells, keep, strict=True) if kept))
    return t


def _legend(comparison: Comparison) -> str:
    kinds = {r.device_kind for r in comparison.runs}
    return (
        (f"devices: {kinds.pop()}; " if len(kinds) == 1 else "")
        + "tok/s: generated (decode) tokens per second; p50/p90: decode step latency (all "
        "steps where the window has no decode-only step); bucket shares: % of the analysed "
        "time summed over ranks (buckets at 0 in every run are left out)"
    )


def chart(comparison: Comparison, bar_width: int = BAR_WIDTH) -> Table:
    """Throughput per device against layout, one bar per run in sweep order."""
    t = Table(
        title="Throughput per device (tok/s/device) by layout",
        box=None,
        title_justify="left",
        show_header=False,
        pad_edge=False,
    )
    t.add_column("layout", overflow="fold")
    t.add_column("bar", width=bar_width)
    t.add_column("value", justify="right")
    t.add_column("regime", overflow="fold")
    top = max((per_device(r) for r in comparison.runs), default=0.0) or 1.0
    for r in comparison.runs:
        value = per_device(r)
        t.add_row(
            f"{r.layout_label} · {r.devices} dev ({r.name})",
            Bar(top, 0, value, width=bar_width, color=COLOURS.get(_bucket(r), "white")),
            f"{value:,.1f}" if r.throughput else "—",
            r.regime,
        )
    return t


def _bucket(r: RunRow) -> str:
    """The bucket that colours a run's bar: its largest non-idle share."""
    return max((b for b in BUCKETS if b != "idle"), key=lambda b: r.shares[b])
