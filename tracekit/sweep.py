"""``tracekit sweep``: one command under several layouts, captured, analysed and compared.

::

    DIR/
      sweep.json       SweepRecord (below): the command, the layouts, one entry per layout
      tp=1/ tp=2/ …    one normal run directory per layout (``tracekit analyze`` reads each)
      comparison.json  the comparison of the completed layouts (``tracekit.compare``)

Resuming: run the same sweep again. A layout whose run directory is complete is kept; any
other run directory of a layout to run (failed, interrupted, or left ``running`` by a sweep
that was killed) is moved aside to ``<layout>.<status>.<n>`` (reported, never overwritten)
and the layout runs again. A layout that fails is recorded (exit code, the command's last
log line) and the sweep goes on; an interrupted one stops the sweep.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from collectors import capture
from collectors.layout import engine_command, needs_plugin, rewrite_argv
from collectors.settings import Settings
from collectors.sweep_client import Client, mark_complete
from tracekit.core import rundir
from tracekit.core.errors import TracekitError
from tracekit.core.layout import Layout

if TYPE_CHECKING:
    from tracekit.compare import Comparison
    from tracekit.core.analysis import Analysis

SWEEP_FILE = "sweep.json"
COMPARISON_FILE = "comparison.json"
FORMAT_VERSION = 1
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

Status = Literal["pending", "running", "complete", "failed", "interrupted"]


class LayoutRun(msgspec.Struct, kw_only=True, omit_defaults=True):
    layout: str
    run: str  # the run directory, relative to the sweep directory
    status: Status = "pending"
    argv: list[str] = msgspec.field(default_factory=list)  # as run (options rewritten)
    plugin_layout: str | None = None  # TRACEKIT_LAYOUT given to the plugin
    exit_code: int | None = None
    error: str | None = None  # why it failed
    last_line: str | None = None  # the command's last log line (failed runs)
    client_exit_code: int | None = None  # --client: its exit status
    regime: str | None = None
    warnings: list[str] = msgspec.field(default_factory=list)
    moved_aside: list[str] = msgspec.field(default_factory=list)  # earlier attempts
    started_at: str | None = None
    ended_at: str | None = None


class SweepRecord(msgspec.Struct, kw_only=True):
    format: Literal["tracekit-sweep"] = "tracekit-sweep"
    format_version: int = FORMAT_VERSION
    argv: list[str]  # the user's command, before any rewriting
    client: list[str] | None = None  # --client: what drove a server command
    capture: dict[str, Any]  # the capture options every layout ran with
    layouts: list[str]  # the layouts of the latest invocation, in order
    status: Status = "running"
    pid: int | None = None  # the sweep process while it runs
    runs: dict[str, LayoutRun] = msgspec.field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    out: Path
    layouts: list[Layout]
    warmup_steps: int = 5
    steps: int = 20
    record_shapes: bool = False
    echo: bool = True  # pass the command's output through (it is kept in logs/ either way)
    client: list[str] | None = None  # a client driving a server command (collectors.sweep_client)


@dataclass(frozen=True)
class SweepResult:
    record: SweepRecord
    comparison: Comparison | None
    exit_status: int  # 0; EXIT_FAILED if a layout failed; EXIT_INTERRUPTED


Report = Callable[[str], None]


@contextlib.contextmanager
def _silenced(silent: bool) -> Iterator[None]:
    """The command's output to its logs only (capture tees to ``sys.stdout.buffer``)."""
    if not silent:
        yield
        return
    with (
        open(os.devnull, "w") as null,
        contextlib.redirect_stdout(null),
        contextlib.redirect_stderr(null),
    ):
        yield


@contextlib.contextmanager
def _client(argv: list[str] | None, run: Path) -> Iterator[Client | None]:
    if argv is None:
        yield None
        return
    with Client(argv, run) as client:
        yield client


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def read_record(out: Path) -> SweepRecord | None:
    path = out / SWEEP_FILE
    if not path.exists():
        return None
    try:
        return msgspec.json.decode(path.read_bytes(), type=SweepRecord)
    except (OSError, msgspec.DecodeError) as exc:
        raise TracekitError(path, f"not a readable tracekit sweep record ({exc})") from None


def write_record(out: Path, record: SweepRecord) -> None:
    """Atomically (tmp file + rename): a killed sweep never leaves half a record."""
    tmp = out / (SWEEP_FILE + ".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(record), indent=2) + b"\n")
    tmp.replace(out / SWEEP_FILE)


def _capture_options(options: Options) -> dict[str, Any]:
    return {
        "warmup_steps": options.warmup_steps,
        "steps": options.steps,
        "record_shapes": options.record_shapes,
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_record(options: Options, argv: list[str]) -> SweepRecord:
    """A new record, or the one a previous sweep of the same command left (to resume)."""
    out = options.out
    if out.exists() and not out.is_dir():
        raise TracekitError(out, "exists and is not a directory")
    record = read_record(out) if out.exists() else None
    labels = [layout.spec for layout in options.layouts]
    if record is None:
        if out.exists() and any(out.iterdir()):
            raise TracekitError(out, f"is not empty and holds no {SWEEP_FILE}: not a sweep")
        out.mkdir(parents=True, exist_ok=True)
        return SweepRecord(
            argv=argv, client=options.client, capture=_capture_options(options), layouts=labels
        )
    if (record.argv, record.client) != (argv, options.client):
        client = f"; client {' '.join(record.client)}" if record.client else ""
        raise TracekitError(
            out / SWEEP_FILE,
            f"holds a sweep of another command ({' '.join(record.argv)}{client}): resume with "
            "the same command, or sweep into a new --out",
        )
    if record.capture != _capture_options(options):
        raise TracekitError(
            out / SWEEP_FILE,
            f"was captured with other options ({record.capture}): resume with the same "
            "options, or sweep into a new --out",
        )
    running = record.status == "running" and record.pid not in (None, os.getpid())
    if running and record.pid is not None and _alive(record.pid):
        raise TracekitError(out, f"another sweep (pid {record.pid}) is running into it")
    record.layouts = labels
    return record


def _move_aside(out: Path, name: str, report: Report) -> str:
    run = out / name
    status = "unknown"
    if rundir.is_run_dir(run):
        try:
            status = rundir.read_manifest(run).status
        except TracekitError:
            status = "unreadable"
    n = 1
    while (out / f"{name}.{status}.{n}").exists():
        n += 1
    target = out / f"{name}.{status}.{n}"
    shutil.move(str(run), target)
    report(f"{name}: the earlier attempt ({status}) moved aside to {target}")
    return target.name


def _is_complete(run: Path) -> bool:
    if not rundir.is_run_dir(run):
        return False
    try:
        manifest = rundir.read_manifest(run)
    except TracekitError:
        return False
    return manifest.status == "complete"


def last_log_line(run: Path) -> str | None:
    """The command's last non-empty output line: stderr first (a traceback's last line)."""
    for name in ("stderr.log", "stdout.log"):
        path = run / rundir.LOGS / name
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            if line.strip():
                return line.strip()[-300:]
    return None


def _analyse(entry: LayoutRun, layout: Layout, run: Path) -> Analysis | None:
    """Analyse a completed run; a run that cannot be analysed fails its layout."""
    from tracekit import analyze

    try:
        analysis = analyze(run)
    except TracekitError as exc:
        entry.status, entry.error = "failed", f"analysis failed: {exc}"
        return None
    entry.regime = analysis.regime.name
    got = rundir.read_manifest(run).layout
    want = layout
    entry.warnings = []
    if got != want:
        entry.warnings = [
            f"the run reports dp={got.dp} tp={got.tp} pp={got.pp} ep={got.ep}, not the "
            f"layout's dp={want.dp} tp={want.tp} pp={want.pp} ep={want.ep}: the layout was not "
            "applied (does the command use vLLM's options or vllm.LLM?)"
        ]
    return analysis


def _run_layout(
    options: Options, argv: list[str], layout: Layout, entry: LayoutRun
) -> Analysis | None:
    run = options.out / entry.run
    entry.argv = rewrite_argv(argv, layout)
    entry.plugin_layout = layout.spec if needs_plugin(argv) else None
    settings = Settings(
        run_dir=run,
        warmup_steps=options.warmup_steps,
        steps=options.steps,
        record_shapes=options.record_shapes,
        layout=entry.plugin_layout,
    )
    try:
        with _silenced(not options.echo), _client(options.client, run) as client:
            code = capture.run(settings, entry.argv)
    except TracekitError as exc:  # the command could not start
        entry.status, entry.exit_code, entry.error = "failed", 127, str(exc)
        return None
    entry.exit_code = code
    if client is not None and client.stopped:  # the client finished: the server was stopped
        entry.client_exit_code = client.code
        if client.code != 0:
            entry.status, entry.error = "failed", f"client exit code {client.code}"
            entry.last_line = client.last_line()
            return None
        mark_complete(run)
        entry.status = "complete"
        return _analyse(entry, layout, run)
    manifest = rundir.read_manifest(run)
    if manifest.status == "interrupted":
        entry.status, entry.error = "interrupted", "interrupted (signal)"
        return None
    if code != 0:
        entry.status, entry.error = "failed", f"exit code {code}"
        entry.last_line = last_log_line(run)
        return None
    entry.status = "complete"
    return _analyse(entry, layout, run)


def run(options: Options, argv: list[str], report: Report = lambda _: None) -> SweepResult:
    """Run ``argv`` under each layout; ``report`` gets one line per event (progress)."""
    if not argv:
        raise TracekitError(None, "no command given: tracekit sweep --layouts ... -- COMMAND ...")
    if not options.layouts:
        raise TracekitError(None, "no layouts given")
    for layout in options.layouts:  # a bad command line fails before anything runs
        rewrite_argv(argv, layout)
    if engine_command(argv) == "serve" and options.client is None:
        report("warning: a server runs until stopped: give --client to drive and stop it")
    out = options.out
    record = open_record(options, argv)
    record.status, record.pid = "running", os.getpid()
    write_record(out, record)
    analyses: list[tuple[str, Analysis]] = []
    interrupted = False
    for layout in options.layouts:
        record.runs.setdefault(layout.spec, LayoutRun(layout=layout.spec, run=layout.spec))
    for index, layout in enumerate(options.layouts, 1):
        label = layout.spec
        entry = record.runs[label]
        where = f"[{index}/{len(options.layouts)}] {label}"
        if _is_complete(out / entry.run):
            report(f"{where}: complete in {out / entry.run}, kept")
            entry.status = "complete"
            if (analysis := _analyse(entry, layout, out / entry.run)) is not None:
                analyses.append((label, analysis))
            else:
                report(f"{where}: {entry.error}")
            write_record(out, record)
            continue
        if (out / entry.run).exists():
            entry.moved_aside.append(_move_aside(out, entry.run, report))
        _restart(entry)
        write_record(out, record)
        via = " (layout through the vLLM plugin)" if needs_plugin(argv) else ""
        report(f"{where}: running {' '.join(rewrite_argv(argv, layout))}{via}")
        try:
            analysis = _run_layout(options, argv, layout, entry)
        except KeyboardInterrupt:
            entry.status, entry.error = "interrupted", "interrupted"
            record.status = "interrupted"
            write_record(out, record)
            raise
        entry.ended_at = _now()
        write_record(out, record)
        report(f"{where}: {_describe(entry)}")
        for warning in entry.warnings:
            report(f"{where}: warning: {warning}")
        if analysis is not None:
            analyses.append((label, analysis))
        if entry.status == "interrupted":
            interrupted = True
            break
    return _finish(out, record, analyses, interrupted)


def _restart(entry: LayoutRun) -> None:
    entry.status, entry.started_at = "running", _now()
    entry.exit_code = entry.client_exit_code = entry.error = entry.last_line = None
    entry.regime = entry.ended_at = None
    entry.warnings = []


def _describe(entry: LayoutRun) -> str:
    if entry.status == "complete":
        return f"complete, regime {entry.regime}"
    text = f"{entry.status} ({entry.error})"
    return text + (f": {entry.last_line}" if entry.last_line else "")


def _finish(
    out: Path, record: SweepRecord, analyses: Sequence[tuple[str, Analysis]], interrupted: bool
) -> SweepResult:
    from tracekit.compare import build, to_json

    comparison = build(analyses) if analyses else None
    if comparison is not None:
        (out / COMPARISON_FILE).write_bytes(to_json(comparison) + b"\n")
    failed = any(record.runs[label].status != "complete" for label in record.layouts)
    record.status = "interrupted" if interrupted else "failed" if failed else "complete"
    record.pid = None
    write_record(out, record)
    status = EXIT_INTERRUPTED if interrupted else EXIT_FAILED if failed else 0
    return SweepResult(record, comparison, status)
