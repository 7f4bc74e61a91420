"""Benchmark `tracekit analyze` against a bare parse and HolisticTraceAnalysis (HTA) 0.5.0.

Usage (from the repo root):

    .venv/bin/python benchmarks/bench_analyze.py --setup-hta     # once: makes .venv-hta with HTA
    .venv/bin/python benchmarks/bench_analyze.py                 # table
    .venv/bin/python benchmarks/bench_analyze.py --repeat 5 --json
    .venv/bin/python benchmarks/bench_analyze.py --trace T.json.gz --hta-python P --no-hta

Each contender runs as its own child process, one after another (never in parallel), `--repeat`
times round-robin; wall time is the best run, peak RSS is the child's `ru_maxrss` from
`os.wait4` (the largest over the runs):
  tracekit  `tracekit analyze TRACE --json > /dev/null`
  (a)       `gzip.decompress` + `orjson.loads` of TRACE (the floor for any JSON-reading tool)
  (b)       HTA: `TraceAnalysis(trace_dir=tmp).get_temporal_breakdown(visualize=False)`, where tmp
            holds a symlink to TRACE. HTA takes every *.json / *.gz file in the folder and reads
            its rank from the first `"rank": N` in the file (distributedInfo), so the file name
            does not matter; the child checks that the breakdown has a row for a rank.

HTA setup: `--setup-hta` runs `python -m venv .venv-hta` with this interpreter and
`.venv-hta/bin/pip install holistictraceanalysis==0.5.0`. Its requirements are unpinned
(pandas, numpy, plotly, networkx, pydot, jupyterlab, pytest); it resolved to pandas 3.1.1 and
numpy 2.4.6 and ran on the default trace with no extras or fixes needed.
Exit 0 whatever the ratios say; exit 2 if the trace file is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tracekit.core.hardware import this_cpu

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = REPO.parent / "shared/traces/hta_v100_allreduce/rank-1.json.gz"
DEFAULT_HTA_PY = REPO / ".venv-hta/bin/python"
HTA_SPEC = "holistictraceanalysis==0.5.0"
PARSE_SRC = "import gzip,orjson,sys; orjson.loads(gzip.decompress(open(sys.argv[1],'rb').read()))"
HTA_SRC = """import json, sys
from hta.trace_analysis import TraceAnalysis
df = TraceAnalysis(trace_dir=sys.argv[1]).get_temporal_breakdown(visualize=False)
assert len(df) > 0 and "rank" in df.columns, f"empty temporal breakdown: {df!r}"
print("HTA_RESULT " + json.dumps({"shape": list(df.shape), "rows": df.to_dict("records")}))
"""
HTA_VERSIONS_SRC = (
    "from importlib.metadata import version as v; "
    "print(v('holistictraceanalysis'), v('pandas'), v('numpy'))"
)


@dataclass
class Result:
    name: str
    time_s: float | None = None
    rss_mib: float | None = None
    note: str = ""


def run_child(cmd: list[str], keep_stdout: bool) -> tuple[float, float, int, str]:
    """Run cmd; return (wall s, child peak RSS MiB, exit code, [stdout+]stderr text)."""
    with tempfile.TemporaryFile() as log:
        out = log if keep_stdout else subprocess.DEVNULL
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read().decode(errors="replace")
    return wall, usage.ru_maxrss / 1024.0, proc.returncode, text


def tracekit_cmd(trace: Path) -> list[str]:
    script = Path(sys.executable).with_name("tracekit")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "tracekit.cli"]
    return [*base, "analyze", str(trace), "--json"]  # stdout -> /dev/null in run_child


def setup_hta(hta_python: Path) -> None:
    venv = hta_python.parents[1]
    print(f"creating {venv} and installing {HTA_SPEC} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(hta_python), "-m", "pip", "install", "-q", HTA_SPEC]
    subprocess.run(pip, check=True)


def versions(hta_python: Path | None) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("tracekit", "orjson"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    if hta_python is not None:
        got = subprocess.run(
            [str(hta_python), "-c", HTA_VERSIONS_SRC], capture_output=True, text=True, check=False
        ).stdout.split()
        if len(got) == 3:
            out["hta"], out["hta_pandas"], out["hta_numpy"] = got
    return out


def bench(trace: Path, repeat: int, hta_python: Path | None) -> tuple[list[Result], dict[str, Any]]:
    results = [Result("tracekit"), Result("(a) gzip+orjson parse"), Result("(b) HTA 0.5.0")]
    hta_out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-hta-") as tmp:
        (Path(tmp) / trace.name).symlink_to(trace.resolve())
        cmds: list[list[str] | None] = [
            tracekit_cmd(trace),
            [sys.executable, "-c", PARSE_SRC, str(trace)],
            [str(hta_python), "-c", HTA_SRC, tmp] if hta_python else None,
        ]
        for _ in range(repeat):
            for res, cmd in zip(results, cmds, strict=True):
                if cmd is None or res.note:
                    continue
                wall, rss, code, text = run_child(cmd, keep_stdout=res is results[2])
                if code != 0:
                    res.note = f"failed (exit {code}): {(text.strip().splitlines() or [''])[-1]}"
                    res.time_s = res.rss_mib = None
                    continue
                res.time_s = wall if res.time_s is None else min(res.time_s, wall)
                res.rss_mib = rss if res.rss_mib is None else max(res.rss_mib, rss)
                for line in text.splitlines():
                    if line.startswith("HTA_RESULT "):
                        hta_out = json.loads(line.removeprefix("HTA_RESULT "))
    if hta_python is None:
        results[2].note = "skipped"
    return results, hta_out


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hta-python", type=Path, default=DEFAULT_HTA_PY)
    ap.add_argument("--no-hta", action="store_true", help="skip (b)")
    ap.add_argument("--setup-hta", action="store_true", help=f"make the HTA venv ({HTA_SPEC})")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if not args.trace.is_file():
        print(f"error: trace file not found: {args.trace}", file=sys.stderr)
        return 2
    if args.setup_hta and not args.no_hta and not args.hta_python.exists():
        setup_hta(args.hta_python)
    hta_python = None if args.no_hta or not args.hta_python.exists() else args.hta_python
    results, hta_out = bench(args.trace, max(1, args.repeat), hta_python)
    tk, base, hta = results
    checks = [
        ("tracekit time / (a) time", ratio(tk.time_s, base.time_s), "<=", 1.0),
        ("(b) time / tracekit time", ratio(hta.time_s, tk.time_s), ">=", 5.0),
        ("tracekit RSS / (b) RSS", ratio(tk.rss_mib, hta.rss_mib), "<=", 0.5),
    ]
    verdicts = [
        "n/a" if v is None else "PASS" if (v <= t if op == "<=" else v >= t) else "FAIL"
        for _, v, op, t in checks
    ]
    machine = {"cpu": this_cpu(), "cores": os.cpu_count(), "platform": platform.platform()}
    vers = versions(hta_python)
    why = "--no-hta given" if args.no_hta else f"no python at {args.hta_python}"
    skipped = f"(b) HTA skipped ({why}); enable with --setup-hta or --hta-python PATH"
    if args.json:
        if hta_python is None:
            print(skipped, file=sys.stderr)
        ratios = [
            {"name": n, "value": v, "target": f"{op} {t}", "verdict": s}
            for (n, v, op, t), s in zip(checks, verdicts, strict=True)
        ]
        doc = dict(trace=str(args.trace), repeat=args.repeat, machine=machine, versions=vers)
        doc |= dict(results=[r.__dict__ for r in results], ratios=ratios, hta_result=hta_out)
        print(json.dumps(doc, indent=2))
        return 0
    con = Console()
    con.print(f"trace: {args.trace} (best of {args.repeat}; peak RSS = child ru_maxrss)")
    con.print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['platform']}")
    con.print("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    table = Table(title="tracekit analyze vs baselines")
    for col in ("run", "time (s)", "peak RSS (MiB)", "note"):
        table.add_column(col, justify="left" if col in ("run", "note") else "right")
    for r in results:
        secs = "-" if r.time_s is None else f"{r.time_s:.3f}"
        mib = "-" if r.rss_mib is None else f"{r.rss_mib:.1f}"
        table.add_row(r.name, secs, mib, r.note)
    con.print(table)
    rt = Table(title="ratios")
    for col in ("ratio", "value", "target", "verdict"):
        rt.add_column(col, justify="left" if col == "ratio" else "right")
    for (n, v, op, t), s in zip(checks, verdicts, strict=True):
        style = {"PASS": "green", "FAIL": "red"}.get(s, "yellow")
        rt.add_row(n, "-" if v is None else f"{v:.2f}", f"{op} {t:g}", f"[{style}]{s}[/]")
    con.print(rt)
    if hta_python is None:
        con.print(skipped)
    elif hta_out:
        con.print(f"(b) HTA temporal breakdown shape {hta_out.get('shape')}: {hta_out.get('rows')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
