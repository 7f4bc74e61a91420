"""Hooks in vLLM's engine core: the profiled window, per-step scheduler stats, engine facts.

Installed by the plugin in whatever process runs ``EngineCore`` (its own process, or the
front end when multiprocessing is off). On the first engine step the hooks:

* write ``meta/engine-<dp>.json`` (model, layout, KV-cache blocks, scheduler limits,
  compilation mode) for the manifest;
* start vLLM's own worker profiler with ``delay_iterations`` = warm-up steps and
  ``max_iterations`` = window steps (full mode), so vLLM skips warm-up and stops by itself:
  as arguments of ``EngineCore.profile`` where it takes them, else through the profiler
  configuration the front end set (``collectors.vllm_features.window_mechanism``);
* record one ``StepRecord`` per step into ``steps/engine-<dp>.jsonl`` (flushed per line, so
  a crash loses at most the step in flight).

On shutdown they stop the profiler if its window is still open, which flushes a partial
trace when the run is interrupted.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from collectors.phases import in_phase
from collectors.settings import META, Settings
from tracekit.core.rundir import STEPS, StepRecord

log = logging.getLogger(__name__)


class EngineRecorder:
    def __init__(self, engine: Any, settings: Settings) -> None:
        self.settings = settings
        config = engine.vllm_config
        # Non-MoE DP replicas run as independent engines whose parallel config is reset to
        # DP=1 / rank 0; data_parallel_index keeps the replica's real index.
        par = config.parallel_config
        index = getattr(par, "data_parallel_index", None)
        self.dp = int(index if index is not None else par.data_parallel_rank or 0)
        self.scheduler = engine.scheduler
        self.preemptions = 0
        self.scheduled_at: dict[int, int] = {}
        steps = settings.run_dir / STEPS
        steps.mkdir(parents=True, exist_ok=True)
        self.out: BinaryIO | None = (steps / f"engine-{self.dp}.jsonl").open("ab")
        write_engine_meta(settings.run_dir / META / f"engine-{self.dp}.json", config)
        self._wrap_scheduler()

    def _wrap_scheduler(self) -> None:
        sched = self.scheduler
        schedule, update, preempt = sched.schedule, sched.update_from_output, None
        preempt = getattr(sched, "_preempt_request", None)

        def timed_schedule(*args: Any, **kwargs: Any) -> Any:
            started = time.time_ns()
            output = schedule(*args, **kwargs)
            self.scheduled_at[id(output)] = started
            return output

        def recorded_update(scheduler_output: Any, model_output: Any) -> Any:
            counts = self.step_tokens(scheduler_output)  # before update: outputs not yet in
            result = update(scheduler_output, model_output)
            self.record(scheduler_output, counts)
            return result

        sched.schedule = in_phase("schedule", timed_schedule)
        sched.update_from_output = recorded_update
        if preempt is not None:

            def counted_preempt(*args: Any, **kwargs: Any) -> Any:
                self.preemptions += 1
                return preempt(*args, **kwargs)

            sched._preempt_request = counted_preempt

    def step_tokens(self, scheduler_output: Any) -> tuple[int, int, int]:
        """(prefill tokens, decode tokens, decode context) scheduled in this step.

        A new request, or one with no output token yet (a later chunk of a chunked prefill),
        is prefill; the rest decode: vLLM's own rule (``compute_iteration_details``), read
        through ``CachedRequestData.is_context_phase`` where it has one (0.16 on), else from
        the scheduler's requests. A decode attends over the tokens already computed (the
        scheduler output's ``num_computed_tokens``) and those scheduled now.
        """
        out = scheduler_output
        new = {r.req_id for r in getattr(out, "scheduled_new_reqs", ())}
        cached = getattr(out, "scheduled_cached_reqs", None)
        computed = dict(
            zip(
                getattr(cached, "req_ids", ()),
                getattr(cached, "num_computed_tokens", ()),
                strict=False,
            )
        )
        in_prefill = getattr(cached, "is_context_phase", None)
        requests = getattr(self.scheduler, "requests", {})
        prefill = decode = context = 0
        for req_id, tokens in getattr(out, "num_scheduled_tokens", {}).items():
            if req_id in new:
                is_prefill = True
            elif in_prefill is not None:
                is_prefill = bool(in_prefill(req_id))
            else:
                request = requests.get(req_id)
                is_prefill = request is None or request.num_output_tokens == 0
            if is_prefill:
                prefill += tokens
            else:
                decode += tokens
                context += int(computed.get(req_id, 0)) + tokens
        return prefill, decode, context

    def record(self, scheduler_output: Any, counts: tuple[int, int, int]) -> None:
        if self.out is None:
            return
        sched = self.scheduler
        kv = getattr(getattr(sched, "kv_cache_manager", None), "usage", 0.0)
        rec = StepRecord(
            ts_ns=self.scheduled_at.pop(id(scheduler_output), time.time_ns()),
            engine=self.dp,
            running=len(sched.running),
            waiting=len(sched.waiting),
            kv_usage=float(kv),
            preemptions=self.preemptions,
            prefill_tokens=counts[0],
            decode_tokens=counts[1],
            decode_context=counts[2],
        )
        self.preemptions = 0
        self.out.write(msgspec.json.encode(rec) + b"\n")
        self.out.flush()

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None


def write_engine_meta(path: Path, config: Any) -> None:
    """Model, layout and KV-cache facts of this engine, for the run manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dp_index = getattr(config.parallel_config, "data_parallel_index", None)
    model = config.model_config
    hf = getattr(model, "hf_text_config", None) or model.hf_config
    par, cache = config.parallel_config, config.cache_config
    sched = getattr(config, "scheduler_config", None)
    comp = getattr(config, "compilation_config", None)

    def attr(*names: str) -> Any:
        for name in names:
            value = getattr(hf, name, None)
            if value is not None:
                return value
        return None

    heads = attr("num_attention_heads")
    hidden = attr("hidden_size")
    meta = {
        "model": {
            "name": str(model.model),
            "architecture": (getattr(model.hf_config, "architectures", None) or ["?"])[0],
            "layers": attr("num_hidden_layers"),
            "hidden_size": hidden,
            "heads": heads,
            "kv_heads": attr("num_key_value_heads") or heads,
            "head_dim": attr("head_dim") or (hidden // heads if hidden and heads else None),
            "intermediate_size": attr("intermediate_size"),
            "moe_intermediate_size": attr("moe_intermediate_size"),
            "experts": attr("num_local_experts", "num_experts", "n_routed_experts"),
            "experts_per_token": attr("num_experts_per_tok", "moe_topk"),
            "vocab_size": attr("vocab_size"),
            "dtype": str(model.dtype).removeprefix("torch."),
            "max_model_len": model.max_model_len,
        },
        "layout": {
            "dp": par.data_parallel_size,
            "tp": par.tensor_parallel_size,
            "pp": par.pipeline_parallel_size,
            "ep": par.tensor_parallel_size * par.data_parallel_size
            if getattr(par, "enable_expert_parallel", False)
            else 1,
        },
        "kv_cache": {
            "block_size": cache.block_size,
            "num_blocks": cache.num_gpu_blocks,
            "dtype": str(cache.cache_dtype),
        },
        "scheduler": {
            "max_num_seqs": getattr(sched, "max_num_seqs", None),
            "max_num_batched_tokens": getattr(sched, "max_num_batched_tokens", None),
        },
        "compilation": {
            "enforce_eager": bool(getattr(model, "enforce_eager", False)),
            "mode": _enum_name(getattr(comp, "mode", None)),
            "cudagraph_mode": _enum_name(getattr(comp, "cudagraph_mode", None)),
        },
        "device": str(getattr(config.device_config, "device_type", "")),
        "dp_index": dp_index,
    }
    path.write_text(json.dumps(meta, indent=2, default=str))


def _enum_name(value: Any) -> str | None:
    """An enum's name (CUDAGraphMode.NONE → "NONE"); None stays None."""
    return None if value is None else str(getattr(value, "name", value))


_RECORDERS: dict[int, EngineRecorder] = {}


def install(settings: Settings) -> None:
    from vllm.v1.engine.core import EngineCore

    if getattr(EngineCore, "__tracekit__", False):
        return
    EngineCore.__tracekit__ = True
    for method in ("step", "step_with_batch_queue"):
        original = getattr(EngineCore, method, None)
        if original is not None:
            setattr(EngineCore, method, _first_step_hook(original, settings))
    EngineCore.shutdown = _shutdown_hook(EngineCore.shutdown)


def _first_step_hook(original: Any, settings: Settings) -> Any:
    def step(self: Any, *args: Any, **kwargs: Any) -> Any:
        if id(self) not in _RECORDERS:
            recorder = _RECORDERS[id(self)] = EngineRecorder(self, settings)
            if settings.mode == "full":
                try:
                    self.profile(True, **profile_arguments(self, recorder.dp, settings))
                except Exception as exc:  # keep the user's run going; say why
                    log.warning("tracekit: could not start vLLM's profiler: %s", exc)
        return original(self, *args, **kwargs)

    return step


def profile_arguments(engine: Any, dp: int, settings: Settings) -> dict[str, Any]:
    """What this vLLM's ``EngineCore.profile(True, ...)`` takes of the window and the name.

    The window goes in the call where ``profile`` takes it; elsewhere the front end put it in
    the profiler configuration (``vllm_plugin``). The DP index goes in the trace name where
    ``profile`` takes a prefix (workers add pp / tp / ep); elsewhere capture renames traces.
    """
    from collectors.vllm_features import WINDOW_ARGS, profile_parameters

    takes = profile_parameters(engine)
    kwargs: dict[str, Any] = {}
    if "profile_prefix" in takes:
        kwargs["profile_prefix"] = f"dp{dp}"
    if all(a in takes for a in WINDOW_ARGS):
        kwargs.update(delay_iterations=settings.warmup_steps, max_iterations=settings.steps)
    return kwargs


def _shutdown_hook(original: Any) -> Any:
    def shutdown(self: Any, *args: Any, **kwargs: Any) -> Any:
        recorder = _RECORDERS.pop(id(self), None)
        if recorder is not None:
            recorder.close()
            if recorder.settings.mode == "full":
                try:  # flush a window the run ended inside of (interrupt, short run)
                    self.profile(False)
                except Exception as exc:
                    log.warning("tracekit: could not stop vLLM's profiler: %s", exc)
        return original(self, *args, **kwargs)

    return shutdown
