"""What ``tracekit -v analyze`` says about each stage: timings and what each stage read.

Per-rank work may run in worker processes or Ray tasks, whose logging never reaches the
user's terminal (a fork server or a Ray worker has its own stderr and log level). So a
worker only *measures* (``FileStats``, carried back with its ranks) and the parent logs
the figures here, at the level the user chose: INFO for stages, files, peaks and window;
DEBUG for classification counts and re-runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileStats:
    """One file as a worker read it, and one of its ranks' stages."""

    file: str
    size_bytes: int
    parse_s: float
    events: int
    stages: tuple[tuple[str, float], ...] = ()  # (stage, ms)
    families: dict[str, int] = field(default_factory=dict)  # events per classified family


def family_counts(family: np.ndarray | None) -> dict[str, int]:
    """Events per family the name rules matched (largest first)."""
    if family is None or not len(family):
        return {}
    from analyzers.rank.classify import FAMILIES

    codes, counts = np.unique(family, return_counts=True)
    got = {FAMILIES[int(c)]: int(n) for c, n in zip(codes, counts, strict=True) if c >= 0}
    return dict(sorted(got.items(), key=lambda kv: -kv[1]))


def log_rank(label: str, stats: FileStats) -> None:
    """A rank's stage times (INFO) and rule matches (DEBUG)."""
    if not log.isEnabledFor(logging.INFO):
        return
    took = ", ".join(f"{name.removesuffix('_stage')} {ms:.1f} ms" for name, ms in stats.stages)
    log.info("%s, %s: %s", label, stats.file, took or "no stages")
    if stats.families:
        listed = ", ".join(f"{k} {n}" for k, n in stats.families.items())
        log.debug("%s rules matched: %s", label, listed)


def log_file(stats: FileStats) -> None:
    """A parsed file: events, size, seconds (INFO)."""
    log.info(
        "parsed %s: %d events, %.1f MB in %.2f s",
        stats.file,
        stats.events,
        stats.size_bytes / 1e6,
        stats.parse_s,
    )


def log_window(window: tuple[int, int] | None, ranks: int) -> None:
    if window is None:
        log.info("window: each rank's own (%d rank(s), no common span to align)", ranks)
    else:
        lo, hi = window
        log.info("window: common to %d ranks, %.2f ms (from %d ns)", ranks, (hi - lo) / 1e6, lo)


def log_peaks(spec_name: str | None, source: str | None, note: str) -> None:
    if spec_name is None:
        log.info("peaks: none (%s)", note or "no device spec")
    else:
        log.info("peaks: %s (%s)%s", spec_name, source, f"; {note}" if note else "")


@contextmanager
def timed(what: str, level: int = logging.INFO) -> Iterator[None]:
    """Log how long the block took."""
    start = time.perf_counter()
    yield
    log.log(level, "%s: %.1f ms", what, (time.perf_counter() - start) * 1e3)
