"""A rank's partition of its analysed window, as the attribution left it (DESIGN.md).

The Analysis keeps each rank's bucket totals; the partition itself (every segment, its bucket
and the family that owns it) is what a timeline draws. The driver keeps it where asked
(``keep_partitions``), next to the Analysis rather than in its JSON, so that exporters render
it without running any stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class RankPartition:
    """Segments ``[bounds[i], bounds[i + 1])``; ``bucket[i]`` indexes ``buckets.BUCKETS`` and
    ``family[i]`` indexes ``families`` (-1: nothing was live)."""

    bounds: npt.NDArray[np.int64]
    bucket: npt.NDArray[np.int8]
    family: npt.NDArray[np.int32]
    families: tuple[str, ...]

    def __post_init__(self) -> None:
        misfit = len(self.bucket) != len(self.family) or len(self.bounds) != len(self.bucket) + 1
        if misfit and (len(self.bounds) or len(self.bucket)):
            raise ValueError("a partition has one bucket and one family per segment")
