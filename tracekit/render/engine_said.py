"""The report's "What vLLM said" lines, from ``Analysis.engine_warnings`` (its logs/)."""

from __future__ import annotations

from tracekit.core.analysis import Analysis, EngineWarning

TITLE = "What vLLM said (logs/: fallbacks and features off that change performance)"


def engine_lines(analysis: Analysis) -> list[str]:
    """One line per finding, as evidence: the kind, its effect, vLLM's words and where."""
    return [line(w) for w in analysis.engine_warnings]


def line(w: EngineWarning) -> str:
    where = f"{w.log}" + (f", {w.origin}" if w.origin else "")
    times = f"{w.count} process(es)" if w.count != 1 else "1 process"
    return f"{w.kind.replace('_', ' ')}: {w.effect} — “{w.message}” ({times}; {where})"
