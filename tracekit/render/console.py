"""The terminal report: verdict, per-rank buckets with bars, top ops, steps, caveats."""

from __future__ import annotations

from collections import defaultdict

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tracekit.core.analysis import (
    NAME_PRIOR,
    Analysis,
    Collectives,
    EngineStats,
    OpTime,
    RankResult,
)
from tracekit.core.buckets import BUCKETS, COLLECTIVE
from tracekit.core.regime_table import OUTLIER_FACTOR
from tracekit.render import bullets, caption_left, fit, middle, ms, rank_labels, text_console
from tracekit.render.context import TITLE, context_lines
from tracekit.render.engine_said import TITLE as ENGINE_TITLE
from tracekit.render.engine_said import engine_lines
from tracekit.render.kv_reads import kv_read_lines
from tracekit.render.roofline import roofline_parts
from tracekit.render.steady_state import steady_parts
from tracekit.render.stragglers import straggler_parts
from tracekit.render.verdict import evidence_lines, runners_up

COLOURS = {
    "compute": "green",
    "hbm": "cyan",
    "collective": "magenta",
    "bubble": "yellow",
    "moe_routing": "blue",
    "kv_stall": "red",
    "host": "bright_black",
    "idle": "grey23",
}
BAR_WIDTH = 16
SHORT = {
    "compute": "comp",
    "collective": "coll",
    "bubble": "bubl",
    "moe_routing": "moe",
    "kv_stall": "kv",
}
LEGEND = {
    "compute": "compute",
    "collective": "exposed collectives",
    "bubble": "pipeline bubbles",
    "moe_routing": "MoE routing",
    "kv_stall": "KV-cache stalls",
}
SPARK = "▁▂▃▄▅▆▇█"


def render(analysis: Analysis, width: int = 120, colour: bool = False, top: int = 12) -> str:
    console, buffer = text_console(width, colour)
    console.print(_summary(analysis))
    console.print(_verdict(analysis), *steady_parts(analysis))

    def show(table: Table) -> None:
        fit(console, caption_left(table))
        console.print(table)

    lines = context_lines(analysis)
    if lines:
        console.print(Text(TITLE, style="bold"))
        console.print(bullets(lines))
    said = engine_lines(analysis)
    if said:
        console.print(Text(ENGINE_TITLE, style="bold"))
        console.print(bullets(said))
    buckets = _bucket_table(analysis, bar=colour)
    if colour and not fit(console, caption_left(buckets)):
        buckets = _bucket_table(analysis, bar=False)  # the bar is the first thing to go
    show(buckets)
    for limit in range(70, 19, -5):  # long names shortened (in the middle) until it fits
        ops = _ops_table(analysis, top, limit)
        if fit(console, caption_left(ops)):
            break
    show(ops)
    for limit in range(70, 19, -5):
        unclassified = _unclassified(analysis, limit)
        if unclassified is None or fit(console, caption_left(unclassified)):
            break
    if unclassified is not None:
        show(unclassified)
    if analysis.step_stats:
        show(_steps_table(analysis))
    if analysis.engine is not None:
        show(_engine(analysis.engine, analysis.kv.stalled_share if analysis.kv else None, width))
    for table in roofline_parts(analysis):
        show(table)
    if analysis.collectives is not None:
        show(_collectives(analysis.collectives))
    for part in straggler_parts(analysis):
        show(part) if isinstance(part, Table) else console.print(part)
    reads = analysis.kv.reads if analysis.kv else None
    if reads is not None:
        console.print(Text("KV cache reads", style="bold"))
        console.print(bullets(kv_read_lines(reads)))
    for title, regime, lines in (
        ("KV cache capacity", "capacity-bound", analysis.kv.evidence if analysis.kv else []),
        ("Pipeline bubbles", "bubble-bound", analysis.bubbles.evidence if analysis.bubbles else []),
        ("MoE routing", "routing-bound", analysis.moe.evidence if analysis.moe else []),
    ):
        if lines and analysis.regime.name != regime:  # else the verdict panel lists them
            console.print(Text(title, style="bold"))
            console.print(bullets(lines))
    console.print(Text(f"Compute vs HBM: {analysis.compute_hbm_basis}.", style="italic"))
    peaks = analysis.peaks
    if peaks is not None and peaks.origin != "none":  # none: the basis above says why
        console.print(Text(f"Peaks ({peaks.origin}): {peaks.source}.", style="italic"))
        if peaks.suspect:
            console.print(Text(f"peak suspect: {peaks.suspect}", style="bold yellow"))
    for warning in analysis.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    return buffer.getvalue()


def _summary(a: Analysis) -> Text:
    ranks = len(a.ranks)
    devices = sorted({n for r in a.ranks for n in r.device_names}) or (
        ["GPU"] if a.device == "gpu" else ["CPU only"]
    )
    clocks = sorted({r.clock for r in a.ranks})
    graph = sum(r.graph_kernels for r in a.ranks)
    text = Text()
    text.append("tracekit analysis of ", style="bold")
    text.append(f"{a.source}\n", style="bold underline")
    text.append(
        f"{ranks} rank(s) · {a.device.upper()} · {', '.join(devices)} · clock: {', '.join(clocks)}"
    )
    if a.manifest:
        layout = a.manifest.get("layout", {})
        text.append(" · layout " + " ".join(f"{k}={v}" for k, v in layout.items()))
        text.append(f" · capture status: {a.manifest.get('status')}")
    if graph:
        text.append(f"\n{graph} kernels replayed from CUDA/HIP graphs, attributed one by one")
    return text


def _verdict(a: Analysis) -> Panel:
    r = a.regime
    lines: list[RenderableType] = [Text(r.label, style="bold")]
    lines.append(bullets(evidence_lines(a), indent=0))
    if r.advice:
        lines.append(bullets([Text(adv, style="green") for adv in r.advice], "→", indent=0))
    if r.runners_up:
        lines.append(Text("runners-up: " + runners_up(r), style="dim"))
    lines += [Text(f"not assessed: {k}: {why}", style="dim") for k, why in r.not_assessed.items()]
    return Panel(Group(*lines), title="Regime", title_align="left", box=box.ROUNDED)


def _bar(rank: RankResult) -> Text:
    bar = Text()
    used = 0
    for bucket in BUCKETS:
        cells = round(rank.buckets[bucket] / rank.window_ns * BAR_WIDTH) if rank.window_ns else 0
        cells = min(cells, BAR_WIDTH - used)
        bar.append("█" * cells, style=COLOURS[bucket])
        used += cells
    return bar


def _bucket_table(a: Analysis, bar: bool) -> Table:
    shown = [b for b in BUCKETS if any(r.buckets[b] for r in a.ranks)]  # drop all-zero
    table = Table(
        title="Where the time went in the profiled window (exclusive buckets, % of each "
        "rank's window)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        padding=(0, 1),
    )
    table.add_column("rank", no_wrap=True)
    table.add_column("window ms", justify="right", no_wrap=True)
    for bucket in shown:
        table.add_column(
            SHORT.get(bucket, bucket), justify="right", style=COLOURS[bucket], no_wrap=True
        )
    table.add_column("hid ms", justify="right", no_wrap=True)
    if bar:
        table.add_column("bar", no_wrap=True, min_width=BAR_WIDTH)
    for rank, label in zip(a.ranks, rank_labels([r.identity for r in a.ranks]), strict=True):
        shares = [
            f"{rank.buckets[k] / rank.window_ns * 100:.1f}" if rank.window_ns else "-"
            for k in shown
        ]
        row = [label, ms(rank.window_ns), *shares, ms(rank.overlapped.get(COLLECTIVE, 0))]
        table.add_row(*row, *([_bar(rank)] if bar else []))
    dropped = [SHORT.get(b, b) for b in BUCKETS if b not in shown]
    legend = [f"{SHORT[b]} = {LEGEND[b]}" for b in shown if b in SHORT]
    table.caption = "; ".join([*legend, "hid ms = collective time hidden under compute"]) + (
        f"; at 0 on every rank, left out: {', '.join(dropped)}" if dropped else ""
    )
    return table


def _merge_ops(ops: list[OpTime]) -> list[OpTime]:
    merged: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for op in ops:
        key = (op.name, op.family, op.bucket)
        merged[key][0] += op.count
        merged[key][1] += op.total_ns
    out = [OpTime(n, f, b, c, t) for (n, f, b), (c, t) in merged.items()]
    return sorted(out, key=lambda o: (-o.total_ns, o.name, o.bucket))


def _collectives(c: Collectives) -> Table:
    table = Table(
        title="Collectives (trace partition; i-th call matched across the ranks of a group)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for col in ("kind", "calls", "exposed ms", "overlapped ms", "matched", "skew µs", "bus GB/s"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for k in c.kinds:
        table.add_row(
            k.kind,
            str(k.calls),
            ms(k.exposed_ns),
            ms(k.overlapped_ns),
            str(k.matched),
            f"{k.skew_mean_ns / 1e3:,.1f} / {k.skew_max_ns / 1e3:,.1f}" if k.matched else "-",
            f"{k.bus_bandwidth / 1e9:,.2f}" if k.bus_bandwidth is not None else "-",
        )
    waits = "; ".join(
        f"{w.label} waited {ms(w.wait_ns)} ms, last {w.last_arrivals}×" for w in c.waits
    )
    table.caption = "skew = mean / max of last − first arrival. " + waits
    return table


def _ops_table(a: Analysis, top: int, name_limit: int = 70) -> Table:
    kind = "device time" if a.device == "gpu" else "self time"
    table = Table(
        title=f"Top kernels / ops ({kind}, all ranks)", box=box.SIMPLE_HEAD, title_justify="left"
    )
    for col, justify in (
        ("name", "left"),
        ("family", "left"),
        ("bucket", "left"),
        ("calls", "right"),
        ("total ms", "right"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for op in _merge_ops([o for r in a.ranks for o in r.top_ops])[:top]:
        table.add_row(
            middle(op.name, name_limit),
            op.family,
            Text(op.bucket, style=COLOURS[op.bucket]),
            str(op.count),
            ms(op.total_ns),
        )
    roofline = any(r.compute_hbm_basis != NAME_PRIOR for r in a.ranks)
    table.caption = "bucket: " + (
        "the roofline (per op from trace shapes, else per modelled engine step), else the "
        "name rules"
        if roofline
        else "the name rules (analyzers/rank/rules.py)"
    )
    return table


def _unclassified(a: Analysis, name_limit: int = 70) -> Table | None:
    ops = _merge_ops([o for r in a.ranks for o in r.unclassified])
    if not ops:
        return None
    total = sum(r.families.get("unclassified", 0) for r in a.ranks)
    table = Table(
        title=f"Unclassified names ({ms(total)} ms counted under compute; no rule "
        "in analyzers/rank/rules.py names them)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    table.add_column("name", no_wrap=True)
    table.add_column("calls", justify="right")
    table.add_column("total ms", justify="right")
    for op in ops[:10]:
        table.add_row(middle(op.name, name_limit), str(op.count), ms(op.total_ns))
    return table


def _steps_table(a: Analysis) -> Table:
    table = Table(
        title="Engine steps in the profiled window (trace: vLLM "
        "execute_context_N(T)_generation_M(G), host time)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for col in (
        "kind",
        "steps",
        "prefill tok",
        "decode tok",
        "total ms",
        "mean ms",
        "p50 ms",
        "p90 ms",
        "max ms",
    ):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for s in a.step_stats:
        table.add_row(
            s.kind,
            str(s.count),
            str(s.context_tokens),
            str(s.generation_tokens),
            ms(s.total_ns),
            ms(s.mean_ns),
            ms(s.p50_ns),
            ms(s.p90_ns),
            ms(s.max_ns),
        )
    excluded = max((s.excluded for s in a.step_stats), default=0)
    if excluded:
        table.caption = (
            f"mean / p50 / p90 leave out {excluded} step(s) longer than {OUTLIER_FACTOR:g}× "
            "the window's median step; total and max count them"
        )
    return table


def _spark(values: list[float], top: float, room: int) -> str:
    if len(values) > room:  # one mark per bin, the bin's peak
        values = [
            max(values[i * len(values) // room : (i + 1) * len(values) // room])
            for i in range(room)
        ]
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(
        SPARK[min(int(v / top * (len(SPARK) - 1) + 0.5), len(SPARK) - 1)] for v in values
    )


def _engine(e: EngineStats, stalled: float | None, width: int) -> Table:
    room = max(width - 44, 8)
    table = Table(
        title=f"Scheduler and KV cache over time, whole run ({e.source}: {e.steps} engine "
        f"steps, {e.engines} engine(s), {ms(e.span_ns)} ms; peak per time bin)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    table.add_column("series", no_wrap=True)
    table.add_column("peak", justify="right")
    table.add_column("mean", justify="right")
    table.add_column("timeline", no_wrap=True)
    points = e.timeline
    table.add_row(
        "KV-cache usage",
        f"{e.kv_usage_max:.0%}",
        f"{e.kv_usage_mean:.0%}",
        _spark([p.kv_usage for p in points], 1.0, room),
    )
    table.add_row(
        "running",
        str(e.running_max),
        f"{e.running_mean:.1f}",
        _spark([float(p.running) for p in points], float(e.running_max), room),
    )
    table.add_row(
        "waiting",
        str(e.waiting_max),
        f"{e.waiting_share:.0%} of time",
        _spark([float(p.waiting) for p in points], float(e.waiting_max), room),
    )
    table.add_row(
        "preemptions",
        str(e.preemptions) if e.preemptions_measured else "not measured",
        "",
        _spark(
            [float(p.preemptions) for p in points],
            float(max((p.preemptions for p in points), default=0)),
            room,
        ),
    )
    full = (
        f"KV cache full while requests wait: {stalled:.1%}"
        if stalled is not None
        else f"KV cache ≥90% full while requests wait: {e.kv_full_waiting_share:.1%}"
    )
    tokens = (
        f"; prefill {e.prefill_tokens} / decode {e.decode_tokens} tokens"
        if e.source == "steps/"
        else ""  # logged stats carry rates, not token counts
    )
    left = (
        f"; means leave out {e.excluded_steps} step(s), {ms(e.excluded_ns)} ms (first step, "
        "long gaps)"
        if e.excluded_steps
        else ""
    )
    table.caption = f"{full} of step time{tokens}, whole run ({e.source}){left}"
    return table
