"""Engine steps from vLLM's per-step annotation ``execute_context_N(T)_generation_M(G)``.

N context (prefill) requests with T tokens, M generation (decode) requests with G tokens.
A step is ``prefill`` when it only prefills, ``decode`` when it only decodes, else ``mixed``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tracekit.core.trace_model import Events, Kind, NameTable

STEP_PATTERN = re.compile(r"execute_context_(\d+)\((\d+)\)_generation_(\d+)\((\d+)\)")


@dataclass(frozen=True)
class StepRow:
    start_ns: int
    dur_ns: int
    context_requests: int
    context_tokens: int
    generation_requests: int
    generation_tokens: int

    @property
    def kind(self) -> Literal["prefill", "decode", "mixed"]:
        if self.context_requests and self.generation_requests:
            return "mixed"
        return "prefill" if self.context_requests else "decode"


def find_steps(events: Events, names: NameTable) -> list[StepRow]:
    """Step annotations of one rank, in time order. Nested duplicates keep the outermost."""
    rows = np.flatnonzero(events.kind == Kind.ANNOTATION)
    if not len(rows):
        return []
    ids, inverse = np.unique(events.name_id[rows], return_inverse=True)
    parsed = [STEP_PATTERN.search(names[int(i)]) for i in ids]
    steps: list[StepRow] = []
    last_end = -1
    for row, which in zip(rows.tolist(), inverse.tolist(), strict=True):
        match = parsed[which]
        if match is None:
            continue
        start, dur = int(events.start_ns[row]), int(events.dur_ns[row])
        if start < last_end:  # the same step annotated twice (nested scopes)
            continue
        n, t, m, g = (int(x) for x in match.groups())
        steps.append(StepRow(start, dur, n, t, m, g))
        last_end = start + dur
    return steps
