"""The run directory: what ``tracekit capture`` writes and ``tracekit analyze`` reads.

::

    RUN/
      manifest.json   Manifest (below): versions, argv, status, exit code, layout, model, ranks,
                      the roofline's peaks (``peaks``)
      traces/         one torch.profiler trace per rank (``*.pt.trace.json.gz``)
      steps/          ``*.jsonl``: one StepRecord per engine step, on the traces' clock
      logs/           the wrapped command's stdout / stderr

The manifest is validated on write and on read; a run whose status is not ``complete`` is
still analysable and says so. ``nothing-recorded``: the command exited 0 but no vLLM engine
loaded tracekit's plugin (no engine facts in ``meta/``, no steps, no traces); analysing it is
a one-line error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import msgspec

from tracekit.core.cpu_probe import RecordedPeaks
from tracekit.core.errors import TracekitError
from tracekit.core.layout import Layout
from tracekit.core.version import vllm_support

MANIFEST = "manifest.json"
TRACES = "traces"
#: under traces/: vLLM's graph-capture traces (``capture_torch_profiler``), kept as written
CAPTURE_TRACES = "capture_traces"
STEPS = "steps"
LOGS = "logs"
FORMAT = "tracekit-run"
FORMAT_VERSION = 1

Status = Literal["running", "complete", "failed", "interrupted", "nothing-recorded"]


class RankEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One trace file (relative to ``traces/``) and the identity capture gave it."""

    file: str
    rank: int | None = None
    dp: int | None = None
    pp: int | None = None
    tp: int | None = None
    ep: int | None = None


class Manifest(msgspec.Struct, kw_only=True, omit_defaults=True):
    format: Literal["tracekit-run"] = "tracekit-run"
    format_version: int = FORMAT_VERSION
    tracekit_version: str
    status: Status
    argv: list[str] = msgspec.field(default_factory=list)
    started_at: str | None = None  # ISO 8601, UTC
    ended_at: str | None = None
    exit_code: int | None = None
    host: dict[str, Any] = msgspec.field(default_factory=dict)
    hardware: dict[str, Any] = msgspec.field(default_factory=dict)
    # the roofline's peaks, recorded at capture: the CPU probe run in the vLLM worker, or the
    # GPUs' names (collectors.peaks); None: captured without them
    peaks: RecordedPeaks | None = None
    versions: dict[str, str] = msgspec.field(default_factory=dict)
    layout: Layout = Layout()
    model: dict[str, Any] | None = None
    kv_cache: dict[str, Any] | None = None
    # the engine's scheduler limits (max_num_seqs, max_num_batched_tokens) and compilation
    # (enforce_eager, mode, cudagraph_mode), from vllm_config; None: not recorded
    scheduler: dict[str, Any] | None = None
    compilation: dict[str, Any] | None = None
    ranks: list[RankEntry] = msgspec.field(default_factory=list)
    capture: dict[str, Any] = msgspec.field(default_factory=dict)
    notes: list[str] = msgspec.field(default_factory=list)


class StepRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """One engine step's scheduler / KV-cache stats; ``ts_ns`` is on the traces' clock."""

    ts_ns: int
    engine: int = 0  # data-parallel engine index
    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0  # fraction of KV-cache blocks in use, 0..1
    preemptions: int = 0  # preemptions during this step
    prefill_tokens: int = 0
    decode_tokens: int = 0
    # the tokens this step's decodes attend over: Σ (tokens already computed + scheduled) over
    # the decoding requests, from the scheduler output; × KV bytes per token = KV bytes read
    decode_context: int = 0


_FIELD = re.compile(r"(?:^|[_.\-])(dp|pp|tp|ep|rank)[_\-]?(\d+)(?=$|[_.\-])", re.IGNORECASE)


def fields_from_name(name: str) -> dict[str, int]:
    """A trace's rank fields from its name: ``dp0_pp1_tp2_rank3.pt.trace.json.gz`` →
    {dp: 0, pp: 1, tp: 2, rank: 3} (capture names traces so; vLLM's and HTA's names too)."""
    found: dict[str, int] = {}
    for key, value in _FIELD.findall(name.split(".pt.trace", maxsplit=1)[0]):
        found.setdefault(key.lower(), int(value))
    return found


_MANIFEST_DECODER = msgspec.json.Decoder(Manifest)
_STEP_DECODER = msgspec.json.Decoder(StepRecord)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def read_manifest(run: Path) -> Manifest:
    path = run / MANIFEST
    try:
        manifest = _MANIFEST_DECODER.decode(path.read_bytes())
    except OSError as exc:
        raise TracekitError(path, f"cannot read manifest: {exc.strerror or exc}") from None
    except msgspec.DecodeError as exc:  # includes ValidationError
        raise TracekitError(path, f"invalid manifest ({exc})") from None
    if manifest.format_version > FORMAT_VERSION:
        raise TracekitError(
            path,
            f"manifest format_version {manifest.format_version} is newer "
            f"than this tracekit understands ({FORMAT_VERSION}); upgrade tracekit",
        )
    return manifest


def write_manifest(run: Path, manifest: Manifest) -> None:
    """Write atomically (tmp file + rename) so a crash never leaves half a manifest."""
    data = msgspec.json.format(msgspec.json.encode(manifest), indent=2)
    _MANIFEST_DECODER.decode(data)  # validate what we write with the reader's rules
    tmp = run / (MANIFEST + ".tmp")
    tmp.write_bytes(data + b"\n")
    tmp.replace(run / MANIFEST)


def read_steps(run: Path) -> list[StepRecord]:
    """All step records under ``steps/``, ordered by time. A torn last line (crash) is skipped."""
    records: list[StepRecord] = []
    for path in sorted((run / STEPS).glob("*.jsonl")):
        lines = path.read_bytes().splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(_STEP_DECODER.decode(line))
            except msgspec.DecodeError as exc:
                if number == len(lines):  # the writer was killed mid-line
                    break
                raise TracekitError(path, f"line {number}: invalid step record ({exc})") from None
    records.sort(key=lambda r: (r.ts_ns, r.engine))
    return records


def hook_notes(hooks: dict[str, Any]) -> list[str]:
    """One line for a vLLM outside the supported range, per hook point it lacks and per
    plugin part that failed to install."""
    support = vllm_support(hooks.get("vllm"))
    out = [support] if support else []
    out += [
        f"vLLM here lacks the hook point {name!r}: {why}"
        for name, why in hooks.get("missing", {}).items()
    ]
    out += [
        f"tracekit's {name} did not install: {why}" for name, why in hooks.get("failed", {}).items()
    ]
    return out
