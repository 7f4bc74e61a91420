"""Engine steps from vLLM's per-step annotation ``execute_context_N(T)_generation_M(G)``.

N context (prefill) requests with T tokens, M generation (decode) requests with G tokens.
A step is ``prefill`` when it only prefills, ``decode`` when it only decodes, else ``mixed``.

vLLM's detailed annotation (``--profiler-config.detailed_trace_annotation``, 0.26 and later)
also gives, per phase, the keys its attention reads and the (query, key) pairs it scores:
``execute_S_context_N(sqTskKsqsqQsqskP)_generation_M(sqGskK'sqsqQ'sqskP')`` with K the sum
of the requests' sequence lengths (context computed plus tokens scheduled), P the sum of
query length × sequence length, Q the sum of squared query lengths. For decode, K is the
context the step's attention reads: where steps/ is absent, it stands in for the
scheduler's count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tracekit.core.trace_model import Events, Kind, NameTable

STEP_PATTERN = re.compile(r"execute_context_(\d+)\((\d+)\)_generation_(\d+)\((\d+)\)")
_PHASE = r"(\d+)\(sq(\d+)sk(\d+)sqsq\d+sqsk(\d+)\)"
DETAILED_PATTERN = re.compile(rf"execute_\d+_context_{_PHASE}_generation_{_PHASE}")


@dataclass(frozen=True)
class StepRow:
    start_ns: int
    dur_ns: int
    context_requests: int
    context_tokens: int
    generation_requests: int
    generation_tokens: int
    #: keys read (sum of sequence lengths) and (query, key) pairs, per phase: vLLM's
    #: detailed annotation only, else None
    context_keys: int | None = None
    context_pairs: int | None = None
    generation_keys: int | None = None
    generation_pairs: int | None = None

    @property
    def keys(self) -> int | None:
        """Keys the step's attention reads over both phases (None: not annotated)."""
        if self.context_keys is None or self.generation_keys is None:
            return None
        return self.context_keys + self.generation_keys

    @property
    def pairs(self) -> int | None:
        """(query, key) pairs the step's attention scores over both phases."""
        if self.context_pairs is None or self.generation_pairs is None:
            return None
        return self.context_pairs + self.generation_pairs

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
    parsed = [_parse(names[int(i)]) for i in ids]
    steps: list[StepRow] = []
    last_end = -1
    for row, which in zip(rows.tolist(), inverse.tolist(), strict=True):
        counts = parsed[which]
        if counts is None:
            continue
        start, dur = int(events.start_ns[row]), int(events.dur_ns[row])
        if start < last_end:  # the same step annotated twice (nested scopes)
            continue
        steps.append(StepRow(start, dur, *counts))
        last_end = start + dur
    return steps


def _parse(name: str) -> tuple[int, ...] | None:
    """The step's counts in StepRow's field order, from either annotation form."""
    detailed = DETAILED_PATTERN.search(name)
    if detailed is not None:
        n, t, kc, pc, m, g, kg, pg = (int(x) for x in detailed.groups())
        return n, t, m, g, kc, pc, kg, pg
    simple = STEP_PATTERN.search(name)
    return None if simple is None else tuple(int(x) for x in simple.groups())


def is_step_name(name: str) -> bool:
    """Whether an annotation names an engine step (either form)."""
    return _parse(name) is not None
