"""``tracekit sweep --client CMD``: drive a server command (``vllm serve``) through one layout.

A server never exits by itself, so a sweep over ``vllm serve`` needs a client: it starts once
the server command is running (it waits for the server's readiness itself, e.g.
``serve_client.py --ready-timeout``), and when it exits tracekit stops the server the way a
user would, with SIGINT, which capture forwards to the command and waits for vLLM to flush
its profiler. The client's output goes to the run's ``logs/client.log``.

The stop is a SIGINT to tracekit's own process (capture forwards it); while a layout runs
with a client, tracekit's SIGINT handler ignores that signal once the client asked for it,
and treats any other SIGINT as the user's Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from tracekit.core import rundir

CLIENT_LOG = "client.log"
STOP_NOTE = "stopped by tracekit sweep (SIGINT) after its client finished"


class Client:
    def __init__(self, argv: list[str], run: Path) -> None:
        self.argv, self.run = argv, run
        self.code: int | None = None
        self.stopped = False  # the client finished and stopped the server
        self._done = threading.Event()  # the server command has exited
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drive, daemon=True)
        self._previous: Any = None

    def __enter__(self) -> Client:
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        while self._thread.is_alive():
            with self._lock:
                if self._proc is not None and self._proc.poll() is None:
                    self._proc.kill()  # the server is gone: the client has nothing to drive
            self._thread.join(0.1)
        signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.stopped:
            return  # our own stop, arriving after capture's handler was put back
        if callable(self._previous):
            self._previous(signum, frame)  # Python's default raises KeyboardInterrupt
            return
        raise KeyboardInterrupt

    def _drive(self) -> None:
        started = self.run / rundir.LOGS / "stdout.log"  # capture's tee: the command runs
        while not started.exists():
            if self._done.wait(0.05):
                return
        with (self.run / rundir.LOGS / CLIENT_LOG).open("wb") as log:
            try:
                with self._lock:
                    if self._done.is_set():
                        return
                    self._proc = subprocess.Popen(
                        self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                    )
            except OSError as exc:
                log.write(f"could not start the client: {exc.strerror or exc}\n".encode())
                self.code = 127
            else:
                self.code = self._proc.wait()
        if not self._done.is_set():
            self.stopped = True
            os.kill(os.getpid(), signal.SIGINT)

    def last_line(self) -> str | None:
        try:
            lines = (self.run / rundir.LOGS / CLIENT_LOG).read_text(errors="replace")
        except OSError:
            return None
        return next((x.strip()[-300:] for x in reversed(lines.splitlines()) if x.strip()), None)


def mark_complete(run: Path) -> None:
    """The server was stopped on purpose: its run is complete (the note says how it ended)."""
    manifest = rundir.read_manifest(run)
    manifest.status = "complete"
    manifest.notes = [*manifest.notes, STOP_NOTE]
    rundir.write_manifest(run, manifest)
