"""The one domain error tracekit raises for bad input."""

from __future__ import annotations

from pathlib import Path


class TracekitError(Exception):
    """Bad input or an unusable run: names the file and the cause in one line."""

    def __init__(self, path: str | Path | None, cause: str) -> None:
        self.path = str(path) if path is not None else None
        self.cause = " ".join(cause.split())  # always one line
        super().__init__(f"{self.path}: {self.cause}" if self.path else self.cause)
