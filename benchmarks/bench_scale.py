"""Scaling benchmark: `tracekit analyze` vs HolisticTraceAnalysis at 1×, 4×, 16× and 1, 2, 8 ranks.

Usage (from the repo root):

    .venv/bin/python benchmarks/bench_scale.py                   # sizes 1,4,16; ranks 1,2,8
    .venv/bin/python benchmarks/bench_scale.py --sizes 1,4,16,40 --hta-max-times 16
    .venv/bin/python benchmarks/bench_scale.py --tracekit-arg=-j --tracekit-arg=2 --json

Inputs are made by `make_large_trace.py` (tiling and time-shifting the real trace, default
`../shared/traces/hta_v100_allreduce/rank-1.json.gz`) into `--work` (default
/tmp/tracekit-scale; reused when present, never committed): `x<N>.json.gz` holds N copies
of the source's events, `ranks<R>/` holds R files of one copy each, with distinct
`distributedInfo` ranks. The 1-rank point is the 1× file.

Each run is one child process, one at a time (`--repeat` times for tracekit, best wall time
kept; HTA once unless `--hta-repeat`). Peak RSS is the larger of the child's `ru_maxrss`
(`os.wait4`: the largest single process) and the peak of its process tree's summed RSS,
sampled every 50 ms from /proc (HTA parses ranks in a pool of processes).
HTA runs `TraceAnalysis(trace_dir).get_temporal_breakdown()` (as in bench_analyze.py) on a
folder holding the input; it is skipped where it would not fit: its RSS predicted from the
1× run above `--hta-max-mib`, or the size above `--hta-max-times`; a run whose tree RSS
passes `--hta-max-mib` is killed and reported as such.
Scaling exponents are least-squares slopes of log(time) over log(size) (or ranks), over all
points and over the last two (which discounts start-up: imports take ~0.25 s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analyze import DEFAULT_HTA_PY, HTA_SRC, tracekit_cmd
from make_large_trace import DEFAULT_SOURCE

from tracekit.core.hardware import this_cpu

RSS_TARGET_MIB = 1536.0  # issue 6: a 2 GB trace within 1.5 GB
SPEEDUP_TARGET = 5.0
LINEAR_MAX_EXPONENT = 1.1


@dataclass
class Run:
    time_s: float | None = None
    rss_mib: float | None = None
    note: str = ""


@dataclass
class Case:
    group: str  # "size" or "ranks"
    factor: int  # size multiple or rank count
    path: str
    text_mib: float  # uncompressed JSON, all files
    tracekit: Run = field(default_factory=Run)
    hta: Run = field(default_factory=Run)


def _tree_rss_kib(pid: int) -> int:
    """Summed RSS of ``pid`` and its descendants (0 for processes that are gone)."""
    total, todo, page_kib = 0, [pid], os.sysconf("SC_PAGE_SIZE") // 1024
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page_kib
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


def run_child(cmd: list[str], limit_mib: float | None, timeout_s: float) -> tuple[Run, str]:
    """Run ``cmd`` (stdout kept only for HTA's check line); peak RSS as described above."""
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        peak_kib, killed = 0, ""
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_kib = max(peak_kib, _tree_rss_kib(proc.pid))
            if limit_mib is not None and peak_kib / 1024 > limit_mib and not killed:
                killed = f"killed: tree RSS passed {limit_mib:.0f} MiB"
                proc.kill()
            elif time.perf_counter() - t0 > timeout_s and not killed:
                killed = f"killed: over {timeout_s:.0f} s"
                proc.kill()
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        log.seek(0)
        text = log.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    rss = max(peak_kib, usage.ru_maxrss) / 1024
    if killed or code != 0:
        last = (text.strip().splitlines() or [""])[-1][:120]
        return Run(None, rss, killed or f"failed (exit {code}): {last}"), text
    return Run(wall, rss), text


def _gz_size(path: Path) -> int:
    """Uncompressed size from the gzip trailer (mod 2**32: fine below 4 GiB)."""
    with path.open("rb") as f:
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")


def _make(source: Path, out: Path, times: int, ranks: int = 1) -> None:
    """make_large_trace in a child: this process stays small (a child's ``ru_maxrss``
    counts its parent's pages from before the ``exec``)."""
    script = Path(__file__).with_name("make_large_trace.py")
    cmd = [sys.executable, str(script), "--source", str(source), "--out", str(out)]
    subprocess.run([*cmd, "--times", str(times), "--ranks", str(ranks)], check=True)


def prepare(source: Path, work: Path, sizes: list[int], ranks: list[int]) -> list[Case]:
    cases = []
    for n in sizes:
        path = work / f"x{n}.json.gz"
        if not path.exists():
            print(f"making {path} ({n} copies) ...", file=sys.stderr)
            _make(source, path, n)
        cases.append(Case("size", n, str(path), _gz_size(path) / 2**20))
    for r in ranks:
        if r == 1:
            path = work / "x1.json.gz"
            if not path.exists():
                _make(source, path, 1)
        else:
            path = work / f"ranks{r}"
            if not path.exists() or len(list(path.glob("rank-*.json.gz"))) != r:
                print(f"making {path} ({r} ranks) ...", file=sys.stderr)
                _make(source, path, 1, ranks=r)
        files = [path] if path.is_file() else sorted(path.glob("rank-*.json.gz"))
        cases.append(Case("ranks", r, str(path), sum(_gz_size(f) for f in files) / 2**20))
    return cases


def bench(cases: list[Case], args: argparse.Namespace, hta_python: Path | None) -> None:
    per_mib: float | None = None  # HTA's RSS per MiB of text, from its smallest run
    for case in cases:
        cmd = [*tracekit_cmd(Path(case.path)), *args.tracekit_arg]
        for _ in range(max(1, args.repeat)):
            run, _ = run_child(cmd, None, args.timeout)
            best = case.tracekit
            if run.time_s is None:
                case.tracekit = run
                break
            if best.time_s is None or run.time_s < best.time_s:
                case.tracekit = Run(run.time_s, max(run.rss_mib or 0, best.rss_mib or 0))
        print(f"{case.group} {case.factor}: tracekit {case.tracekit}", file=sys.stderr)
        if hta_python is None:
            case.hta.note = "skipped (no HTA python)"
            continue
        predicted = per_mib * case.text_mib if per_mib else None
        if case.group == "size" and case.factor > args.hta_max_times:
            case.hta.note = f"skipped: above --hta-max-times {args.hta_max_times}"
            continue
        if predicted and predicted > args.hta_max_mib:
            case.hta.note = f"skipped: predicted {predicted:.0f} MiB > {args.hta_max_mib:.0f}"
            continue
        with tempfile.TemporaryDirectory(prefix="bench-scale-hta-") as tmp:
            src = Path(case.path)
            for f in [src] if src.is_file() else sorted(src.glob("rank-*.json.gz")):
                (Path(tmp) / f.name).symlink_to(f.resolve())
            hta_cmd = [str(hta_python), "-c", HTA_SRC, tmp]
            for _ in range(max(1, args.hta_repeat)):
                run, text = run_child(hta_cmd, args.hta_max_mib, args.hta_timeout)
                run = _check_hta(run, text, case.factor if case.group == "ranks" else 1)
                if case.hta.time_s is None or (run.time_s or math.inf) < case.hta.time_s:
                    case.hta = run
        if case.hta.rss_mib and case.hta.time_s and per_mib is None:
            per_mib = case.hta.rss_mib / case.text_mib
        print(f"{case.group} {case.factor}: HTA {case.hta}", file=sys.stderr)


def _check_hta(run: Run, text: str, ranks: int) -> Run:
    """HTA must have analysed every rank (it reads ranks from '"rank": N' in each file)."""
    if run.time_s is None:
        return run
    lines = [ln for ln in text.splitlines() if ln.startswith("HTA_RESULT ")]
    if not lines:
        return Run(None, run.rss_mib, "no HTA_RESULT line")
    seen = len(json.loads(lines[-1].removeprefix("HTA_RESULT "))["rows"])
    if seen != ranks:
        return Run(None, run.rss_mib, f"HTA analysed {seen} of {ranks} ranks")
    return run


def exponent(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(y) over log(x)."""
    pts = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y]
    if len(pts) < 2 or len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    num = sum((x - mx) * (y - my) for x, y in pts)
    return num / sum((x - mx) ** 2 for x, _ in pts)


def summary(cases: list[Case]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(exponent rows, target checks)."""
    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    for group, what in (("size", "size"), ("ranks", "ranks")):
        mine = [c for c in cases if c.group == group]
        for who in ("tracekit", "hta"):
            pts = [(float(c.factor), getattr(c, who).time_s) for c in mine]
            good = [(x, y) for x, y in pts if y]
            last_two = exponent(good[-2:])
            rows.append(
                {
                    "group": group,
                    "run": who,
                    "exponent_all": exponent(good),
                    "exponent_last_two": last_two,
                    "points": len(good),
                }
            )
            if who == "tracekit" and group == "size" and good:
                name = f"tracekit time exponent over {what} (last two)"
                checks.append(_check(name, last_two, "<=", LINEAR_MAX_EXPONENT))
    for c in cases:
        tk, hta = c.tracekit, c.hta
        speed = hta.time_s / tk.time_s if hta.time_s and tk.time_s else None
        label = f"{c.group} {c.factor}"
        checks.append(_check(f"HTA time / tracekit time, {label}", speed, ">=", SPEEDUP_TARGET))
        checks.append(_check(f"tracekit peak RSS MiB, {label}", tk.rss_mib, "<=", RSS_TARGET_MIB))
    return rows, checks


def _check(name: str, value: float | None, op: str, target: float) -> dict[str, Any]:
    ok = None if value is None else value <= target if op == "<=" else value >= target
    verdict = "n/a" if ok is None else "PASS" if ok else "FAIL"
    return {"name": name, "value": value, "target": f"{op} {target:g}", "verdict": verdict}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(cases: list[Case], rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    con = Console(width=140)
    table = Table(title="tracekit analyze vs HTA 0.5.0: time and peak RSS")
    for col in ("case", "JSON MiB", "tk s", "tk MiB", "HTA s", "HTA MiB", "HTA/tk time"):
        table.add_column(col, justify="right")
    table.add_column("tk/HTA RSS", justify="right")
    table.add_column("note")
    for c in cases:
        tk, hta = c.tracekit, c.hta
        speed = hta.time_s / tk.time_s if hta.time_s and tk.time_s else None
        mem = tk.rss_mib / hta.rss_mib if hta.time_s and tk.rss_mib and hta.rss_mib else None
        case = f"{c.factor}×" if c.group == "size" else f"{c.factor} ranks"
        table.add_row(
            case,
            f"{c.text_mib:.0f}",
            _fmt(tk.time_s),
            _fmt(tk.rss_mib, 0),
            _fmt(hta.time_s),
            _fmt(hta.rss_mib, 0),
            _fmt(speed, 1),
            _fmt(mem),
            "; ".join(n for n in (tk.note, hta.note) if n),
        )
    con.print(table)
    et = Table(title="scaling exponents: slope of log(time) over log(size or ranks)")
    for col in ("over", "run", "all points", "last two", "points"):
        et.add_column(col, justify="right" if col not in ("over", "run") else "left")
    for r in rows:
        et.add_row(
            r["group"],
            r["run"],
            _fmt(r["exponent_all"]),
            _fmt(r["exponent_last_two"]),
            str(r["points"]),
        )
    con.print(et)
    ct = Table(title="targets")
    for col in ("check", "value", "target", "verdict"):
        ct.add_column(col, justify="left" if col == "check" else "right")
    for ch in checks:
        style = {"PASS": "green", "FAIL": "red"}.get(ch["verdict"], "yellow")
        ct.add_row(ch["name"], _fmt(ch["value"]), ch["target"], f"[{style}]{ch['verdict']}[/]")
    con.print(ct)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tracekit-scale")
    ap.add_argument("--sizes", type=_ints, default=[1, 4, 16])
    ap.add_argument("--ranks", type=_ints, default=[1, 2, 8])
    ap.add_argument("--repeat", type=int, default=2, help="tracekit runs per case (best time)")
    ap.add_argument("--hta-repeat", type=int, default=1)
    ap.add_argument("--hta-python", type=Path, default=DEFAULT_HTA_PY)
    ap.add_argument("--no-hta", action="store_true")
    ap.add_argument("--hta-max-times", type=int, default=16)
    ap.add_argument("--hta-max-mib", type=float, default=12 * 1024.0)
    ap.add_argument("--hta-timeout", type=float, default=1800.0)
    ap.add_argument("--timeout", type=float, default=1800.0, help="per tracekit run")
    ap.add_argument("--tracekit-arg", action="append", default=[], help="extra CLI argument")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--save", type=Path, help="also write the figures as JSON to this file")
    ap.add_argument("--hta-from", type=Path, help="reuse the HTA figures of an earlier --save file")
    args = ap.parse_args()
    if not args.source.is_file():
        print(f"error: source trace not found: {args.source}", file=sys.stderr)
        return 2
    hta_python = None if args.no_hta or not args.hta_python.exists() else args.hta_python
    cases = prepare(args.source, args.work, args.sizes, args.ranks)
    if args.hta_from:
        hta_python = None
        old = json.loads(args.hta_from.read_text())["cases"]
        runs = {(c["group"], c["factor"]): Run(**c["hta"]) for c in old}
    bench(cases, args, hta_python)
    if args.hta_from:
        for case in cases:
            case.hta = runs.get((case.group, case.factor), Run(note="not in --hta-from"))
            case.hta.note = (case.hta.note + f" (from {args.hta_from.name})").strip()
    rows, checks = summary(cases)
    machine = {"cpu": this_cpu(), "cores": os.cpu_count()}
    doc = {"machine": machine, "args": sys.argv[1:], "cases": [asdict(c) for c in cases]}
    text = json.dumps(doc | {"exponents": rows, "checks": checks}, indent=2)
    if args.save:
        args.save.write_text(text)
    if args.json:
        print(text)
        return 0
    Console().print(f"source: {args.source}; machine: {machine['cpu']}, {machine['cores']} cores")
    render(cases, rows, checks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
