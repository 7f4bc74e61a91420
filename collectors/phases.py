"""Engine phase ranges: one torch record_function and one NVTX range (domain "tracekit").

The same ranges then show in torch.profiler traces and under Nsight Systems. The ``nvtx``
package is a no-op unless a tool such as Nsight Systems is attached.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

DOMAIN = "tracekit"
F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def phase(name: str, torch_range: bool = True) -> Iterator[None]:
    with ExitStack() as stack:
        try:
            import nvtx

            stack.enter_context(nvtx.annotate(message=name, domain=DOMAIN))
        except ImportError:
            pass
        if torch_range and _profiling():  # only inside the profiled window: no cost outside
            from torch.profiler import record_function

            stack.enter_context(record_function(f"{DOMAIN}::{name}"))
        yield


def _profiling() -> bool:
    """Whether a torch profiler is recording in this process (a C flag read, ~0.1 µs)."""
    import torch

    return bool(torch._C._autograd._profiler_enabled())


def in_phase(name: str, fn: F) -> F:
    """``fn`` wrapped in ``phase(name)``; marked so a second install is a no-op."""
    if getattr(fn, "__tracekit_phase__", None):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with phase(name):
            return fn(*args, **kwargs)

    wrapper.__tracekit_phase__ = name  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
