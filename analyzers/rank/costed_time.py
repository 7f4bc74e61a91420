"""What decided each stretch of a rank's busy time: ``RankRoofline.costed_ns``.

Busy time is the partition's device work (GPU ranks) or op time (CPU ranks): every segment
some work owns, host-only and idle time left out. Each busy segment is credited to the first
of these that decided its compute-vs-HBM split:

* ``trace_shapes``: a call costed from the trace's own recorded shapes covers it;
* ``capture_shapes``: a graph-replayed kernel costed from its graph-capture trace covers it;
* ``model_config``: it lies inside an engine step modelled from the model config;
* ``name_rules``: the rest (collectives, routing, unclassified work, and compute / memory work
  nothing modelled), whose bucket the name rules gave.

The four sum to the busy time exactly.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analyzers.rank.attribute import BUCKET_INDEX, Attribution, segment_interval, split
from analyzers.rank.classify import FAMILY_LEVEL, HOST_LEVEL, UNCLASSIFIED_INDEX
from analyzers.rank.op_bounds import cover
from tracekit.core.buckets import COMPUTE, HBM

I64 = npt.NDArray[np.int64]
COSTED_KEYS = ("trace_shapes", "capture_shapes", "model_config", "name_rules")


def costed_ns(
    att: Attribution,
    trace: tuple[I64, I64],
    capture: tuple[I64, I64],
    steps: tuple[I64, I64],
) -> dict[str, int]:
    """Busy time per deciding source (module docstring); intervals as (starts, ends)."""
    att = split(att, np.concatenate([*trace, *capture, *steps]))
    part = att.partition
    length = np.diff(part.bounds)
    busy = (part.winner >= 0) & (part.winner != HOST_LEVEL)
    split_ok = np.isin(att.segment_bucket, (BUCKET_INDEX[COMPUTE], BUCKET_INDEX[HBM]))
    decidable = busy & split_ok & (part.winner != FAMILY_LEVEL[UNCLASSIFIED_INDEX])
    by_trace = decidable & (cover(att, *trace) > 0)
    by_capture = decidable & ~by_trace & (cover(att, *capture) > 0)
    by_model = decidable & ~by_trace & ~by_capture & (segment_interval(att, *steps) >= 0)
    rest = busy & ~by_trace & ~by_capture & ~by_model
    masks = (by_trace, by_capture, by_model, rest)
    return {k: int(length[m].sum()) for k, m in zip(COSTED_KEYS, masks, strict=True)}
