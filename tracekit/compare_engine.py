"""What vLLM said, set side by side for two runs of a comparison (``tracekit.compare``).

A run whose engine fell back to a slower kernel or backend, or ran with a feature off
(``Analysis.engine_warnings``, from its logs/), may be slower for that reason rather than for
what its buckets show; a finding names the kinds one run logged and the other did not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from tracekit.core.analysis import EngineWarning

QUOTED: Final = 70  # characters of vLLM's message quoted in a finding


def only_in(these: Sequence[EngineWarning], other: Sequence[EngineWarning]) -> list[EngineWarning]:
    """The findings of ``these`` whose kind ``other`` lacks."""
    kinds = {w.kind for w in other}
    return [w for w in these if w.kind not in kinds]


class Run(Protocol):
    """A compared run (``tracekit.compare.RunRow``): its name and what vLLM logged."""

    @property
    def name(self) -> str: ...

    @property
    def engine_warnings(self) -> Sequence[EngineWarning]: ...


def engine_difference(faster: Run, slower: Run) -> tuple[list[str], list[str], str]:
    """Kinds only the slower run logged, kinds only the faster one logged, and a sentence
    naming them ("" when both logged the same kinds)."""
    slow_only = only_in(slower.engine_warnings, faster.engine_warnings)
    fast_only = only_in(faster.engine_warnings, slower.engine_warnings)
    parts = []
    if slow_only:
        parts.append(f"vLLM logged in {slower.name} only: " + ", ".join(map(_named, slow_only)))
    if fast_only:
        parts.append(f"in {faster.name} only: " + ", ".join(map(_named, fast_only)))
    return [w.kind for w in slow_only], [w.kind for w in fast_only], "; ".join(parts)


def _named(w: EngineWarning) -> str:
    quote = w.message if len(w.message) <= QUOTED else w.message[: QUOTED - 1] + "…"
    return f"{w.kind.replace('_', ' ')} (“{quote}”)"
