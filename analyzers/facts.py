"""What the run directory says that the stages need: ``RunFacts``.

``manifest_facts`` reads the manifest (model config, layout, KV cache) and the per-step
records (``steps/``, else vLLM's logged stats); ``device_spec`` picks the peaks ranks are
judged against. ``run_facts`` combines both for a loaded Trace; the rank pool settles the
peaks itself once every rank has said what its devices are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from analyzers.cost_model import ModelConfig, Shard, dtype_bytes, kv_bytes_per_token
from analyzers.vllm_log import read_logs
from tracekit import hardware, rundir
from tracekit.hardware import DeviceSpec
from tracekit.model import RankId, Trace
from tracekit.rundir import StepRecord


@dataclass(frozen=True)
class RunFacts:
    """What the run directory says that the cost model needs (None: not known)."""

    model: ModelConfig | None = None
    layout: Shard = field(default_factory=Shard)
    dp: int = 1
    block_size: int | None = None
    num_blocks: int | None = None
    kv_dtype_bytes: int | None = None
    records: tuple[StepRecord, ...] = ()
    spec: DeviceSpec | None = None
    spec_note: str = ""

    @property
    def usable_blocks(self) -> int | None:
        return self.num_blocks - 1 if self.num_blocks else None  # vLLM's null block

    def shard(self, identity: RankId) -> Shard:
        lay = self.layout
        return Shard(lay.tp, lay.pp, lay.ep, identity.pp or 0)

    def kv_bytes_per_token(self, shard: Shard) -> int | None:
        """KV-cache bytes per token on one rank: 2 · layers · kv heads · head dim · dtype."""
        m = self.model
        return None if m is None else kv_bytes_per_token(m, shard, self.kv_dtype_bytes)


def run_facts(trace: Trace) -> RunFacts:
    """Model config, layout, KV cache, step records and device peaks of a run directory."""
    facts = manifest_facts(trace.run_dir, trace.manifest)
    spec, note = device_spec(
        any(r.has_device for r in trace.ranks),
        [n for r in trace.ranks for n in r.device_names],
        facts.model,
        trace.manifest,
    )
    return replace(facts, spec=spec, spec_note=note)


def device_spec(
    has_device: bool,
    device_names: Sequence[str],
    model: ModelConfig | None,
    manifest: dict[str, Any] | None,
) -> tuple[DeviceSpec | None, str]:
    """The peaks ranks are judged against: the first GPU the spec table knows among the
    ranks' devices (in rank order), else, for a CPU run with a model, the measured CPU."""
    names = [n for n in device_names if n]
    if has_device:
        spec = next((s for s in map(hardware.gpu_spec, names) if s), None)
        return spec, "" if spec else f"no spec-table row for the device(s) {sorted(set(names))}"
    if model is not None:
        return hardware.cpu_spec(((manifest or {}).get("hardware") or {}).get("cpu_model"))
    return None, ""


def manifest_facts(run_dir: str | None, manifest: dict[str, Any] | None) -> RunFacts:
    """Everything of ``RunFacts`` but the device peaks: what the run directory says.

    Without ``steps/`` records, vLLM's own periodic stats log lines stand in (coarse: one
    sample per logging interval; ``analyzers.vllm_log``)."""
    manifest = manifest or {}
    records: tuple[StepRecord, ...] = ()
    if run_dir:
        records = tuple(rundir.read_steps(Path(run_dir))) or read_logs(Path(run_dir), manifest)
    model = ModelConfig.from_manifest(manifest.get("model"))
    layout = manifest.get("layout") or {}
    kv = manifest.get("kv_cache") or {}
    kv_dtype = kv.get("dtype")
    return RunFacts(
        model=model,
        layout=Shard(
            tp=int(layout.get("tp") or 1),
            pp=int(layout.get("pp") or 1),
            ep=int(layout.get("ep") or 1),
        ),
        dp=int(layout.get("dp") or 1),
        block_size=kv.get("block_size"),
        num_blocks=kv.get("num_blocks"),
        kv_dtype_bytes=None if kv_dtype in (None, "auto") else dtype_bytes(kv_dtype),
        records=records,
    )
