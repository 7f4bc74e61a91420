"""Classification stage: every device event and host op gets a family from the rule table."""

from __future__ import annotations

from functools import lru_cache
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from analyzers.rules import FAMILY_BUCKET, UNCLASSIFIED, classify_name
from tracekit.buckets import PRIORITY
from tracekit.model import Events, Kind, NameTable

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


@lru_cache(maxsize=65536)
def _family_of(name: str, scope: Literal["device", "host"]) -> int:
    return FAMILY_INDEX[classify_name(name, scope)]


def classify_events(events: Events, names: NameTable) -> npt.NDArray[np.int16]:
    """Per event: the family index of device work and host ops, ``NOT_WORK`` for the rest."""
    family = np.full(len(events), NOT_WORK, dtype=np.int16)
    family[events.kind == Kind.MEMCPY] = FAMILY_INDEX["memcpy"]
    family[events.kind == Kind.MEMSET] = FAMILY_INDEX["memset"]
    for kind, scope in ((Kind.KERNEL, "device"), (Kind.CPU_OP, "host")):
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
