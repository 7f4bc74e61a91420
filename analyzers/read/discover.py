"""Find the trace files behind a user's PATH and what their names say about identity."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from analyzers.read.nsys import REPORT_SUFFIXES, SQLITE_SUFFIXES
from tracekit.core import rundir
from tracekit.core.errors import TracekitError
from tracekit.core.rundir import Manifest, fields_from_name

_TRACE_SUFFIXES = (".json", ".json.gz")
_NSYS_SUFFIXES = SQLITE_SUFFIXES + REPORT_SUFFIXES  # Nsight Systems exports and reports
# vLLM's front-end (API server) trace holds no model work; it is not a rank.
_NOT_A_RANK = re.compile(r"async_llm|api_server|frontend", re.IGNORECASE)


@dataclass(frozen=True)
class TraceFile:
    path: Path
    name_fields: dict[str, int]  # dp/pp/tp/ep/rank read from the file name
    manifest_fields: dict[str, int]  # the same from the run manifest, where there is one


@dataclass(frozen=True)
class Discovered:
    source: Path
    files: tuple[TraceFile, ...]
    manifest: Manifest | None
    notes: tuple[str, ...]
    run_dir: Path | None = None


def is_trace_name(path: Path) -> bool:
    return path.name.endswith(_TRACE_SUFFIXES) and path.name != rundir.MANIFEST


def is_nsys_name(path: Path) -> bool:
    return path.suffix.lower() in _NSYS_SUFFIXES


def discover(path: Path) -> Discovered:
    """A single trace, a folder of per-rank traces, or a run directory."""
    if not path.exists():
        raise TracekitError(path, "no such file or directory")
    if path.is_file():
        if path.name == rundir.MANIFEST:
            return discover(path.parent)
        return Discovered(path, (TraceFile(path, fields_from_name(path.name), {}),), None, ())
    if rundir.is_run_dir(path):
        return _discover_run(path)
    files, notes = _trace_files(path)
    if not files and (path / rundir.TRACES).is_dir():
        files, notes = _trace_files(path / rundir.TRACES)
    if not files:
        raise TracekitError(
            path, "no trace files (*.json, *.json.gz, *.sqlite, *.nsys-rep) in this folder"
        )
    found = _from_files(path, files, None, {})
    return Discovered(path, found.files, None, notes + found.notes)


def _trace_files(folder: Path) -> tuple[list[Path], tuple[str, ...]]:
    """Kineto traces, else Nsight Systems exports (a report only where no export of it is
    here). Both kinds in one folder describe the same run twice: the Kineto traces win."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    kineto = [p for p in files if is_trace_name(p)]
    nsys = [p for p in files if is_nsys_name(p)]
    if kineto:
        return kineto, tuple(
            f"skipped {p.name}: an Nsight Systems file next to Kineto traces "
            "(analyse it on its own)"
            for p in nsys
        )
    exports = {p.stem for p in nsys if p.suffix.lower() in SQLITE_SUFFIXES}
    reports = [p for p in nsys if p.suffix.lower() in REPORT_SUFFIXES and p.stem in exports]
    notes = tuple(f"skipped {p.name}: its SQLite export is here" for p in reports)
    return [p for p in nsys if p not in reports], notes


def _discover_run(run: Path) -> Discovered:
    manifest = rundir.read_manifest(run)
    traces = run / rundir.TRACES
    fields = manifest_fields(manifest)
    files, skipped = _trace_files(traces) if traces.is_dir() else ([], ())
    present = {p.name for p in files}
    notes = [missing_note(name) for name in fields if name not in present]
    notes += rundir.hook_notes(manifest.capture.get("hooks") or {})
    notes += skipped
    if manifest.status != "complete":
        notes.append(
            f"the capture did not complete (status: {manifest.status}, exit code "
            f"{manifest.exit_code}): this is a partial run"
        )
    if not files:
        raise TracekitError(traces, "run directory holds no trace files")
    found = _from_files(run, files, manifest, fields)
    return Discovered(run, found.files, manifest, tuple(notes) + found.notes, run_dir=run)


def manifest_fields(manifest: Manifest) -> dict[str, dict[str, int]]:
    """Per trace file the manifest lists: the rank fields it gives."""
    return {
        entry.file: {
            k: v for k in ("rank", "dp", "pp", "tp", "ep") if (v := getattr(entry, k)) is not None
        }
        for entry in manifest.ranks
    }


def missing_note(name: str) -> str:
    return f"manifest lists {name} but the file is missing"


def _from_files(
    source: Path,
    files: list[Path],
    manifest: Manifest | None,
    manifest_fields: dict[str, dict[str, int]],
) -> Discovered:
    ranks = [p for p in files if not _NOT_A_RANK.search(p.name)]
    notes = tuple(
        f"skipped {p.name}: a front-end trace, not a rank"
        for p in files
        if _NOT_A_RANK.search(p.name)
    )
    if not ranks:
        raise TracekitError(source, "no per-rank trace files (only front-end traces)")
    found = tuple(
        TraceFile(p, fields_from_name(p.name), manifest_fields.get(p.name, {})) for p in ranks
    )
    return Discovered(source, found, manifest, notes)
