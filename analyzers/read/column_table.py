"""Numpy columns grown chunk by chunk, for the streaming parser."""

from __future__ import annotations

from typing import Any

import numpy as np

from tracekit.core.trace_model import NO_VALUE


class ColumnTable:
    """Columns appended chunk by chunk to arrays grown in place: a large array grows by
    ``realloc`` (remapped, not copied), so no column is ever held twice while parsing.
    An ``optional`` column is allocated when a chunk first holds it (earlier rows get
    NO_VALUE); one never held is a read-only NO_VALUE view that takes no memory."""

    def __init__(self, dtypes: dict[str, Any], optional: tuple[str, ...] = ()) -> None:
        self.dtypes = dtypes
        self.arrays = {k: np.empty(0, t) for k, t in dtypes.items() if k not in optional}
        self.rows = 0

    def append(self, columns: dict[str, np.ndarray]) -> None:
        end = self.rows + len(columns["start_ns"])
        capacity = len(self.arrays["start_ns"])
        if end > capacity:
            capacity = max(end, capacity * 3 // 2, 1 << 16)
            for array in self.arrays.values():
                array.resize(capacity, refcheck=False)
        for key, values in columns.items():
            if key not in self.arrays:
                self.arrays[key] = np.full(capacity, NO_VALUE, dtype=self.dtypes[key])
            self.arrays[key][self.rows : end] = values
        self.rows = end

    def finish(self) -> dict[str, np.ndarray]:
        for array in self.arrays.values():
            array.resize(self.rows, refcheck=False)
        arrays, self.arrays = self.arrays, {}
        for key, dtype in self.dtypes.items():
            if key not in arrays:
                arrays[key] = np.broadcast_to(np.array(NO_VALUE, dtype=dtype), (self.rows,))
        return arrays
