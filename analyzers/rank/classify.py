"""Classification stage: every device event and host op gets a family from the rule table.

Annotations (``user_annotation``) are not work, except communication a backend records as
one: gloo's ``gloo:recv`` / ``gloo:all_reduce`` … are ``RecordScope::USER_SCOPE`` spans, the
time the transfer or collective actually ran. They get their communication family (p2p or a
collective) from the same host rules; any other annotation stays ``NOT_WORK``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from analyzers.rank.rules import FAMILY_BUCKET, UNCLASSIFIED, classify_name
from tracekit.core.buckets import BUBBLE, COLLECTIVE, PRIORITY
from tracekit.core.trace_model import Events, Kind, NameTable

#: Families in a fixed order; an event's family is an index into this tuple (-1: not work).
FAMILIES: Final[tuple[str, ...]] = tuple(FAMILY_BUCKET)
FAMILY_INDEX: Final[dict[str, int]] = {f: i for i, f in enumerate(FAMILIES)}
NOT_WORK: Final = -1

#: Sweep levels: families ordered by their bucket's priority, then host activity last.
LEVEL_FAMILIES: Final[tuple[str, ...]] = tuple(
    sorted(FAMILIES, key=lambda f: (PRIORITY.index(FAMILY_BUCKET[f]), FAMILY_INDEX[f]))
)
HOST_ACTIVITY: Final = "host_activity"
LEVELS: Final[tuple[str, ...]] = (*LEVEL_FAMILIES, HOST_ACTIVITY)
FAMILY_LEVEL: Final = np.array([LEVELS.index(f) for f in FAMILIES], dtype=np.int32)
HOST_LEVEL: Final = len(LEVELS) - 1
LEVEL_BUCKET: Final[tuple[str, ...]] = (*(FAMILY_BUCKET[f] for f in LEVEL_FAMILIES), "host")
#: Families an annotation may carry: communication (p2p waits, collectives).
COMM_FAMILIES: Final = frozenset(f for f in FAMILIES if FAMILY_BUCKET[f] in (COLLECTIVE, BUBBLE))


@lru_cache(maxsize=65536)
def _family_of(name: str, scope: Literal["device", "host", "annotation"]) -> int:
    if scope == "annotation":
        found = classify_name(name, "host")
        return FAMILY_INDEX[found] if found in COMM_FAMILIES else NOT_WORK
    return FAMILY_INDEX[classify_name(name, scope)]


def classify_events(events: Events, names: NameTable) -> npt.NDArray[np.int16]:
    """Per event: the family index of device work, host ops and communication annotations
    (module docstring), ``NOT_WORK`` for the rest."""
    family = np.full(len(events), NOT_WORK, dtype=np.int16)
    family[events.kind == Kind.MEMCPY] = FAMILY_INDEX["memcpy"]
    family[events.kind == Kind.MEMSET] = FAMILY_INDEX["memset"]
    scopes: tuple[tuple[Kind, Literal["device", "host", "annotation"]], ...] = (
        (Kind.KERNEL, "device"),
        (Kind.CPU_OP, "host"),
        (Kind.ANNOTATION, "annotation"),
    )
    for kind, scope in scopes:
        rows = np.flatnonzero(events.kind == kind)
        if not len(rows):
            continue
        ids, inverse = np.unique(events.name_id[rows], return_inverse=True)
        per_name = np.array(
            [_family_of(names[int(i)], scope) for i in ids],
            dtype=np.int16,
        )
        family[rows] = per_name[inverse]
    return family


UNCLASSIFIED_INDEX: Final = FAMILY_INDEX[UNCLASSIFIED]
#: a family that owns every op nested under it (run-time compilation)
COMPILE_INDEX: Final = FAMILY_INDEX["compile"]


#: Host ops that are MoE routing inside an MoE layer but sampling inside the sampler.
ROUTING_CANDIDATES: Final = re.compile(r"^aten::(topk|_?softmax|sort|argsort)$")
SAMPLER_SCOPE: Final = re.compile(r"sampl", re.IGNORECASE)


def route_moe_host_ops(
    events: Events, names: NameTable, family: npt.NDArray[np.int16]
) -> npt.NDArray[np.int16]:
    """In a run with MoE expert ops, top-k / softmax outside the sampler are routing.

    vLLM's CPU MoE layer computes routing with ``aten::topk`` and ``aten::softmax`` (no fused
    kernel), names the sampler also uses. Ops inside a sampling scope (vLLM's
    ``gpu_model_runner: sample``, tracekit's ``tracekit::sample``) keep their sampling family.
    """
    moe = family == FAMILY_INDEX["moe_gemm"]
    if not moe.any():
        return family
    ops = np.flatnonzero(events.kind == Kind.CPU_OP)
    ids, inverse = np.unique(events.name_id[ops], return_inverse=True)
    is_candidate = np.array([bool(ROUTING_CANDIDATES.match(names[int(i)])) for i in ids])
    candidates = ops[is_candidate[inverse]] if len(ids) else ops[:0]
    if not len(candidates):
        return family
    scopes = np.flatnonzero(events.kind == Kind.ANNOTATION)
    scope_ids, scope_inverse = np.unique(events.name_id[scopes], return_inverse=True)
    is_sampler = np.array([bool(SAMPLER_SCOPE.search(names[int(i)])) for i in scope_ids])
    sampler = scopes[is_sampler[scope_inverse]] if len(scope_ids) else scopes[:0]
    inside = _inside_any(events, candidates, sampler)
    out = family.copy()
    out[candidates[~inside]] = FAMILY_INDEX["moe_routing"]
    return out


def _inside_any(
    events: Events, rows: npt.NDArray[np.intp], scopes: npt.NDArray[np.intp]
) -> npt.NDArray[np.bool_]:
    """Whether each row lies within a scope interval on the same thread."""
    inside = np.zeros(len(rows), dtype=bool)
    if not len(scopes):
        return inside
    for thread in np.unique(events.tid[rows]):
        mine = rows[events.tid[rows] == thread]
        theirs = scopes[events.tid[scopes] == thread]
        if not len(theirs):
            continue
        order = np.argsort(events.start_ns[theirs])
        s_start = events.start_ns[theirs][order]
        s_end = np.maximum.accumulate(events.end_ns[theirs][order])
        at = np.searchsorted(s_start, events.start_ns[mine], side="right") - 1
        ok = (at >= 0) & (s_end[np.clip(at, 0, None)] >= events.end_ns[mine])
        inside[np.isin(rows, mine[ok])] = True
    return inside
