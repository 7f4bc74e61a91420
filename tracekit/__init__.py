"""tracekit: where an LLM inference run's time went, and why.

The package holds the core (``tracekit.core``) and the front ends, which may import anything:
the click CLI (``cli`` and the ``cli_*`` commands, sharing ``cli_common``), the renderers
(``render``), the Perfetto / Chrome JSON export (``export``) and the UI opener (``open_ui``),
runs compared (``compare``, ``compare_runs``, ``compare_engine``), two runs diffed op by op
(``kernel_diff``), the layout sweep
(``sweep``: capture → analyze → compare), the progress bar (``progress``) and this API.

Python API::

    import tracekit
    trace = tracekit.load("run/")        # the parsed trace model (per-rank event tables)
    result = tracekit.analyze("run/")    # the Analysis (typed; pandas views on demand)
    result.buckets_frame()
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tracekit.core.errors import TracekitError
from tracekit.core.version import __version__

if TYPE_CHECKING:
    from tracekit.core.analysis import Analysis
    from tracekit.core.trace_model import Trace

__all__ = ["TracekitError", "__version__", "analyze", "load"]


def load(path: str | Path, jobs: int | None = None) -> Trace:
    """Parse a trace file, a folder of per-rank traces or a run directory.

    ``jobs``: processes parsing rank files at once (None: one per core, capped by files).
    """
    from analyzers.read.loader import load as _load

    return _load(path, jobs=jobs)


def analyze(path: str | Path, jobs: int | None = None, whole_window: bool = False) -> Analysis:
    """Load and analyse ``path``: buckets per rank, steps, top ops and the regime verdict,
    over the run's steady window (``Analysis.steady`` says which steps and why), or over
    everything profiled with ``whole_window``."""
    from analyzers.engine.driver import analyze as _analyze

    return _analyze(path, jobs=jobs, whole_window=whole_window)
