"""Telling compared runs apart (``tracekit.compare``): labels, the same run twice, and what
each run's analysis warned about that a comparison must repeat.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol

from tracekit.core.analysis import Analysis

#: An analysis warning a comparison repeats (prefixed with the run's name): it changes figures.
REPEATED: Final = ("rank trace unreadable", "traces for ")


class Labelled(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def layout_label(self) -> str: ...


def run_names(paths: Sequence[str]) -> list[str]:
    """Each run's folder / file name, or the path as given where names collide (numbered
    where even those do: the same run given twice)."""
    short = [Path(p).name or p for p in paths]
    names = [s if short.count(s) == 1 else p for s, p in zip(short, paths, strict=True)]
    return [
        n if names.count(n) == 1 else f"{n} #{names[:i].count(n) + 1}" for i, n in enumerate(names)
    ]


def label(run: Labelled, other: Labelled) -> str:
    """``run``'s layout label, with its name where ``other`` has the same layout."""
    if run.layout_label == other.layout_label:
        return f"{run.layout_label} ({run.name})"
    return run.layout_label


def run_warnings(named: Sequence[tuple[str, Analysis]]) -> list[str]:
    """Each run's warnings about unreadable or missing ranks, once, as ``name: warning``."""
    return [f"{name}: {w}" for name, a in named for w in a.warnings if w.startswith(REPEATED)]


def same_run_warnings(names: Sequence[str], paths: Sequence[str | Path]) -> list[str]:
    """Runs given twice: the same path, or trace files of identical names and content."""
    out = []
    runs = [(name, Path(path).resolve()) for name, path in zip(names, paths, strict=True)]
    hashes: dict[Path, str] = {}
    for i, (name, path) in enumerate(runs):
        for first, earlier in runs[:i]:
            if path == earlier:
                how = "the same path"
            elif _sizes(path) == _sizes(earlier) and _sizes(path):
                if _content(path, hashes) != _content(earlier, hashes):
                    continue
                how = "identical trace files"
            else:
                continue
            out.append(f"{first} and {name} are the same run ({how}): compared with itself")
            break
    return out


def _traces(path: Path) -> list[Path]:
    files = [path] if path.is_file() else sorted(path.rglob("*"))
    return [f for f in files if f.is_file() and _is_trace(f)]


def _sizes(path: Path) -> list[tuple[str, int]]:
    return [(f.name, f.stat().st_size) for f in _traces(path)]


def _content(path: Path, hashes: dict[Path, str]) -> str:
    if path not in hashes:
        digest = hashlib.sha256()
        for file in _traces(path):
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        hashes[path] = digest.hexdigest()
    return hashes[path]


def _is_trace(file: Path) -> bool:
    name = file.name
    return name.endswith((".json", ".json.gz", ".sqlite")) and name != "manifest.json"
