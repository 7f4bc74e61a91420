"""What one run directory says for calibration (``analyzers.planning.calibration``): its analysis,
model, layout, device peaks, the engine steps of ``steps/`` with their lengths (as
``tracekit compare`` counts busy time), the workload and running batch read from them, and
its decode throughput."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median
from typing import Any

from analyzers.engine.driver import analyze
from analyzers.planning.step_cost import Shard
from analyzers.read.run_facts import RunFacts, manifest_facts
from analyzers.read.vllm_log import LogRecord
from analyzers.run.engine_timeline import busy_durations
from analyzers.run.throughput import throughput
from tracekit.core import rundir
from tracekit.core.analysis import Analysis
from tracekit.core.errors import TracekitError
from tracekit.core.layout import Layout
from tracekit.core.model_config import ModelConfig, ModelSpec
from tracekit.core.plan_result import Workload


@dataclass(frozen=True)
class Run:
    name: str
    path: Path
    analysis: Analysis
    spec: ModelSpec
    layout: Layout
    facts: RunFacts
    workload: Workload
    batch: float
    tokens_per_s: float  # decode tokens/s, all engines
    busy_ns: dict[int, list[tuple[rundir.StepRecord, int]]]  # engine → (record, its length)

    @property
    def shards(self) -> list[Shard]:
        lay = self.facts.layout
        return [Shard(lay.tp, lay.pp, lay.ep, s) for s in range(lay.pp)]


def measure(path: Path, jobs: int | None) -> Run:
    if not rundir.is_run_dir(path):
        raise TracekitError(path, "not a tracekit run directory (no manifest.json)")
    a = analyze(path, jobs=jobs)
    manifest: dict[str, Any] = a.manifest or {}
    model = ModelConfig.from_manifest(manifest.get("model"))
    if model is None:
        raise TracekitError(path, "its manifest has no model config: nothing to calibrate")
    if a.hardware is None:
        why = a.compute_hbm_basis.partition("no roofline: ")[2] or "unknown device"
        raise TracekitError(path, f"no device peaks for the roofline ({why})")
    if not any(r.roofline and r.roofline.kinds and r.roofline.decided_ns for r in a.ranks):
        raise TracekitError(path, "no profiled engine step with tokens: nothing to fit")
    facts = replace(manifest_facts(str(path), manifest), spec=a.hardware)
    # per-step records only (steps/): logged stats samples carry no token counts
    records = [r for r in facts.records if not isinstance(r, LogRecord)]
    name = Path(str((manifest.get("model") or {}).get("name") or "model")).name
    spec = ModelSpec(name, model, facts.kv_dtype_bytes or model.dtype_bytes, f"manifest of {path}")
    label = path.resolve().name or str(path)
    measured = throughput(a, 1)  # the run's rate (the per-device split is not used)
    if measured is None or not records:
        raise TracekitError(path, "no steps/ records with decode tokens: no throughput to fit")
    engines = _engine_steps(records)
    work, batch = _workload(path, engines)
    layout = facts.layout
    return Run(label, path, a, spec, layout, facts, work, batch, measured.tokens_per_s, engines)


def _engine_steps(records: list[rundir.StepRecord]) -> dict[int, list[tuple[Any, int]]]:
    """Each engine's records with their busy lengths (``engine_timeline.busy_durations``)."""
    busy = busy_durations(records)
    out: dict[int, list[tuple[Any, int]]] = {}
    for engine in sorted({r.engine for r in records}):
        rows = sorted(
            (i for i, r in enumerate(records) if r.engine == engine),
            key=lambda i: records[i].ts_ns,
        )
        out[engine] = [(records[i], int(busy[i])) for i in rows]
    return out


def _workload(path: Path, engines: dict[int, list[tuple[Any, int]]]) -> tuple[Workload, float]:
    admitted = prefill = decode = 0
    batches, peak = [], 0
    for rows in engines.values():
        running = 0
        for r, _ in rows:
            admitted += max(0, r.running - running)
            running = r.running
            prefill, decode = prefill + r.prefill_tokens, decode + r.decode_tokens
        busy = [r.running for r, _ in rows if r.decode_tokens]
        batches.append(sum(busy) / len(busy) if busy else 0.0)
        peak += max((r.running for r, _ in rows), default=0)
    if not (admitted and prefill and decode):
        raise TracekitError(path, "steps/ shows no admitted request with prefill and decode")
    prompt, output = round(prefill / admitted), round(decode / admitted) + 1
    return Workload(f"{prompt}:{output}:{peak}", prompt, output, peak), median(batches)


def kv_bytes(run: Run) -> float:
    f = run.facts
    per_token = f.kv_bytes_per_token(run.shards[0]) or 0
    if not (f.num_blocks and f.block_size and per_token):
        raise TracekitError(run.path, "its manifest has no KV-cache blocks: KV size unknown")
    return float(f.num_blocks * f.block_size * per_token)
