"""What the run directory says that the stages need: ``RunFacts``.

``manifest_facts`` reads the manifest (model config, layout, KV cache) and the per-step
records (``steps/``, else vLLM's logged stats); ``device_spec`` picks the peaks ranks are
judged against, which the driver settles once every rank has said what its devices are
(``analyzers.engine.settle``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from analyzers.planning.step_cost import Shard, kv_bytes_per_token
from analyzers.read import engine_warnings
from analyzers.read.run_config import Limits, scheduler_limits
from analyzers.read.vllm_log import read_logs
from tracekit.core import gpu_identify, rundir
from tracekit.core.analysis import EngineWarning
from tracekit.core.cpu_probe import RecordedPeaks
from tracekit.core.dtypes import dtype_bytes
from tracekit.core.hardware import DeviceSpec
from tracekit.core.layout import Layout
from tracekit.core.model_config import ModelConfig
from tracekit.core.rundir import StepRecord
from tracekit.core.trace_model import RankId


@dataclass(frozen=True)
class RunFacts:
    """What the run directory says that the cost model needs (None: not known)."""

    model: ModelConfig | None = None
    layout: Layout = field(default_factory=Layout)
    block_size: int | None = None
    num_blocks: int | None = None
    kv_dtype_bytes: int | None = None
    records: tuple[StepRecord, ...] = ()
    spec: DeviceSpec | None = None
    spec_note: str = ""
    limits: Limits = field(default_factory=Limits)  # max_num_seqs / max_num_batched_tokens
    #: vLLM's log lines that change performance (logs/: analyzers.read.engine_warnings)
    engine_warnings: tuple[EngineWarning, ...] = ()

    @property
    def dp(self) -> int:
        return self.layout.dp

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


def device_spec(
    has_device: bool,
    device_names: Sequence[str],
    manifest: dict[str, Any] | None,
) -> tuple[DeviceSpec | None, str]:
    """The peaks ranks are judged against, and why there are none if not.

    The rule (DESIGN.md, "Reproducible"): only what the input records applies, never the
    analysing machine. A GPU run: the first GPU the spec table knows among the ranks'
    devices (in rank order), else among the GPUs the manifest's ``peaks`` names; a device
    whose name it does not know by the properties labelled after it (``gpu_identify``),
    where they fit one row and no other part. A CPU run
    directory: the CPU probe its manifest recorded at capture (``peaks.cpu_probe``); without
    one, no CPU peaks. A bare CPU trace: none either — it does not say which CPU ran it, so
    this machine's ``tracekit hw`` figures cannot be known to apply."""
    recorded = _recorded(manifest)
    names = [n for n in device_names if n]
    if has_device:
        names += recorded.gpus if isinstance(recorded, RecordedPeaks) else []
        found = [gpu_identify.lookup(n) for n in names]
        spec = next((s for s, _ in found if s), None)
        if spec is not None:
            return spec, ""
        why = "".join(f"; {w}" for w in dict.fromkeys(w for _, w in found if w))
        return None, f"no spec-table row for the device(s) {sorted(set(names))}{why}"
    if manifest is None:
        return None, BARE_CPU
    if isinstance(recorded, str):
        return None, recorded
    if recorded is None:
        return None, NOT_RECORDED
    if recorded.cpu_probe is None:
        return None, f"the CPU probe measured nothing at capture: {recorded.error or 'no reason'}"
    return recorded.cpu_probe.spec("recorded at capture (manifest)"), ""


BARE_CPU = (
    "a bare CPU trace does not say which CPU ran it, so no measured peaks apply (a "
    "`tracekit capture` run directory records them)"
)
NOT_RECORDED = (
    "the run's manifest records no CPU peaks (captured before tracekit recorded them): "
    "re-capture it; this machine's `tracekit hw` figures never stand in for the run's CPU"
)


def _recorded(manifest: dict[str, Any] | None) -> RecordedPeaks | str | None:
    """The manifest's ``peaks``, or why they are unreadable."""
    raw = (manifest or {}).get("peaks")
    if raw is None:
        return None
    try:
        return msgspec.convert(raw, RecordedPeaks)
    except msgspec.ValidationError as exc:
        return f"the manifest's peaks are unreadable ({exc})"


def manifest_facts(run_dir: str | None, manifest: dict[str, Any] | None) -> RunFacts:
    """Everything of ``RunFacts`` but the device peaks: what the run directory says.

    Without ``steps/`` records, vLLM's own periodic stats log lines stand in (coarse: one
    sample per logging interval; ``analyzers.read.vllm_log``)."""
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
        layout=Layout(
            dp=int(layout.get("dp") or 1),
            tp=int(layout.get("tp") or 1),
            pp=int(layout.get("pp") or 1),
            ep=int(layout.get("ep") or 1),
        ),
        block_size=kv.get("block_size"),
        num_blocks=kv.get("num_blocks"),
        kv_dtype_bytes=None if kv_dtype in (None, "auto") else dtype_bytes(kv_dtype),
        records=records,
        limits=scheduler_limits(manifest),
        engine_warnings=engine_warnings.read(run_dir),
    )
