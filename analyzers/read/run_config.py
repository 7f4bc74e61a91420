"""What the run was configured to do, read from its manifest: execution mode and scheduler limits.

**Execution** (eager or compiled, CUDA graphs on or off), first from the manifest's
``compilation`` record (written by the capture plugin from ``vllm_config``), else from the
command line (``argv``): ``--enforce-eager`` / ``--enforce_eager`` / ``enforce_eager=True``, a
workload's own ``--eager`` flag, or a compilation config naming ``cudagraph_mode`` NONE. A
command line that says none of this is *unknown* (a script may set it in code), except
vLLM's own CLI (``vllm serve`` / ``vllm bench``), whose default is compiled with CUDA graphs.
vLLM on CPU never uses CUDA graphs: ``graphs`` is None there.

**Scheduler limits** ``max_num_seqs`` and ``max_num_batched_tokens``, from the manifest's
``scheduler`` record, else the command line (``--max-num-seqs N``, ``max_num_seqs=N``, …).

**The binding limit**: of the step time during which requests waited, which limit held
them: the running batch at ``max_num_seqs`` (the scheduler, not the cache), else the KV cache
full (``analyzers.rank.kv_stall.stalled``), else the step's tokens at ``max_num_batched_tokens``
(the token budget), else unknown. The one holding the most waiting time binds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tracekit.core.run_context import Execution
from tracekit.core.rundir import StepRecord

_EAGER_FLAGS = ("--enforce-eager", "--enforce_eager", "--eager")
_EAGER_KW = re.compile(r"enforce[_-]eager\s*[=:]\s*[\"']?true", re.IGNORECASE)
_NO_GRAPHS = re.compile(r"cudagraph_mode\W+none\b", re.IGNORECASE)


def execution(manifest: dict[str, Any] | None, device: Literal["gpu", "cpu"]) -> Execution:
    """How the engine executed (module docstring)."""
    manifest = manifest or {}
    comp = manifest.get("compilation") or {}
    if comp:
        eager = bool(comp.get("enforce_eager")) or _name(comp.get("mode")) in ("NONE", "0")
        no_graphs = eager or _name(comp.get("cudagraph_mode")) == "NONE"
        return _execution(device, eager, not no_graphs, "manifest compilation")
    argv = [str(a) for a in manifest.get("argv") or []]
    flag = next((a for a in argv if a.split("=")[0] in _EAGER_FLAGS), None)
    if flag is None:
        flag = next((a for a in argv if _EAGER_KW.search(a)), None)
    if flag is not None:
        return _execution(device, True, False, f"argv: {flag}")
    graphs_off = next((a for a in argv if _NO_GRAPHS.search(a)), None)
    if graphs_off is not None:
        return _execution(device, False, False, "argv: cudagraph_mode NONE")
    if _vllm_cli(argv):
        return _execution(device, False, True, "argv: vLLM CLI defaults (no --enforce-eager)")
    return Execution(
        device=device,
        mode="unknown",
        graphs=None,
        source="not recorded (no compilation record; the command line names no eager flag)",
    )


def _execution(device: Literal["gpu", "cpu"], eager: bool, graphs: bool, src: str) -> Execution:
    return Execution(
        device=device,
        mode="eager" if eager else "compiled",
        graphs=graphs if device == "gpu" else None,
        source=src,
    )


def _name(value: Any) -> str:
    """An enum's name as the plugin records it ("CUDAGraphMode.NONE" → "NONE")."""
    return "" if value is None else str(value).rsplit(".", 1)[-1].upper()


def _vllm_cli(argv: Sequence[str]) -> bool:
    """``vllm serve …`` / ``vllm bench …``: vLLM's own defaults apply."""
    return len(argv) > 1 and argv[0].rsplit("/", 1)[-1] == "vllm" and argv[1] in ("serve", "bench")


@dataclass(frozen=True)
class Limits:
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    source: str | None = None


def scheduler_limits(manifest: dict[str, Any] | None) -> Limits:
    """max_num_seqs / max_num_batched_tokens: the manifest's scheduler record, else argv."""
    manifest = manifest or {}
    sched = manifest.get("scheduler") or {}
    seqs, tokens = sched.get("max_num_seqs"), sched.get("max_num_batched_tokens")
    if seqs or tokens:
        return Limits(_int(seqs), _int(tokens), "manifest scheduler")
    argv = [str(a) for a in manifest.get("argv") or []]
    seqs, tokens = _arg(argv, "max_num_seqs"), _arg(argv, "max_num_batched_tokens")
    return Limits(seqs, tokens, "manifest argv") if seqs or tokens else Limits()


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _arg(argv: Sequence[str], name: str) -> int | None:
    """``--max-num-seqs N``, ``--max-num-seqs=N``, ``--max_num_seqs N``, ``max_num_seqs=N``."""
    spelled = {f"--{name}", f"--{name.replace('_', '-')}"}
    for i, arg in enumerate(argv):
        if arg in spelled and i + 1 < len(argv):
            return _int(argv[i + 1])
        key, _, value = arg.partition("=")
        if value and (key in spelled or key.strip() == name):
            return _int(value)
    kw = re.compile(rf"\b{name}\s*=\s*(\d+)")
    for arg in argv:
        found = kw.search(arg)
        if found:
            return int(found.group(1))
    return None


def capped_by_seqs(
    records: Sequence[StepRecord], max_num_seqs: int | None
) -> npt.NDArray[np.bool_]:
    """Per record: the running batch is at max_num_seqs while requests wait."""
    running = np.array([r.running for r in records], dtype=np.int64)
    waiting = np.array([r.waiting > 0 for r in records], dtype=bool)
    if not max_num_seqs:
        return np.zeros(len(records), dtype=bool)
    out: npt.NDArray[np.bool_] = waiting & (running >= max_num_seqs)
    return out


def binding_limit(
    records: Sequence[StepRecord],
    weights: npt.NDArray[np.float64],
    kv_full: npt.NDArray[np.bool_],
    limits: Limits,
) -> tuple[str | None, dict[str, float]]:
    """The limit holding the most waiting-step time, and each limit's share of step time
    (``weights``: per record, its share; ``kv_full``: the KV-cache stall rule per record)."""
    waiting = np.array([r.waiting > 0 for r in records], dtype=bool)
    if not (waiting & (weights > 0)).any():
        return None, {}
    seqs = capped_by_seqs(records, limits.max_num_seqs)
    kv = kv_full & ~seqs
    tokens = np.zeros(len(records), dtype=bool)
    if limits.max_num_batched_tokens:
        used = np.array([r.prefill_tokens + r.decode_tokens for r in records], dtype=np.int64)
        tokens = waiting & (used >= limits.max_num_batched_tokens) & ~seqs & ~kv
    other = waiting & ~seqs & ~kv & ~tokens
    shares = {
        "max_num_seqs": float(weights[seqs].sum()),
        "kv_blocks": float(weights[kv].sum()),
        "max_num_batched_tokens": float(weights[tokens].sum()),
        "unknown": float(weights[other].sum()),
    }
    return max(shares, key=lambda k: shares[k]), shares
