"""Machine-readable output: the Analysis in its versioned, validated JSON schema."""

from __future__ import annotations

from tracekit.core.analysis import Analysis, to_json


def render(analysis: Analysis) -> bytes:
    return to_json(analysis) + b"\n"
