"""Open a trace in the Perfetto UI: serve the file once on loopback, point the browser at it.

As Perfetto's own ``tools/open_trace_in_ui`` does: an HTTP server on ``127.0.0.1:PORT``
answers ``GET /<file name>`` with the trace and the header
``Access-Control-Allow-Origin: https://ui.perfetto.dev`` (the UI fetches the trace from its
own origin, so the browser needs that CORS grant), and the browser opens
``https://ui.perfetto.dev/#!/?url=http://127.0.0.1:PORT/<file name>``. The server stops
after that one GET is answered (requests for other paths get 404 and do not count), or when
the timeout passes, so it never hangs forever. A preflight (``OPTIONS``, which browsers may
send before a public page reads from loopback) is allowed and does not count either.

On a remote machine (over SSH) the browser's loopback is not this one's: ``serve_once``
prints, to stderr, how to forward the port (``ssh -L PORT:127.0.0.1:PORT user@host``) or to
copy the trace and open it at ui.perfetto.dev (``remote_recipe``).
"""

from __future__ import annotations

import getpass
import http.server
import logging
import shutil
import socket
import sys
import time
import webbrowser
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, unquote

from tracekit.core.errors import TracekitError

log = logging.getLogger(__name__)

UI_ORIGIN = "https://ui.perfetto.dev"
HOST = "127.0.0.1"
DEFAULT_PORT = 9001
DEFAULT_TIMEOUT_S = 300.0


def ui_url(file_name: str, port: int = DEFAULT_PORT) -> str:
    return f"{UI_ORIGIN}/#!/?url=http://{HOST}:{port}/{quote(file_name)}"


def remote_recipe(path: Path, port: int) -> str:
    """How to open the served trace from another machine: forward the port over SSH, or
    copy the file and open it in the UI."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid
        user = "user"
    host = socket.gethostname() or "host"
    return (
        f"on another machine (e.g. over SSH), forward the port first:\n"
        f"  ssh -L {port}:{HOST}:{port} {user}@{host}\n"
        f"  then open {ui_url(path.name, port)}\n"
        f"or copy the trace and open it at {UI_ORIGIN}:\n"
        f"  scp {user}@{host}:{path.resolve()} .\n"
    )


class _OnceServer(http.server.HTTPServer):
    def __init__(self, path: Path, port: int) -> None:
        self.path = path
        self.served = False
        super().__init__((HOST, port), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _OnceServer

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", UI_ORIGIN)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def do_OPTIONS(self) -> None:
        """A CORS / private-network preflight: allowed, and not the one GET."""
        self.send_response(204)
        self.send_header("Access-Control-Allow-Methods", "GET")
        self.send_header("Access-Control-Allow-Private-Network", "true")
        self.end_headers()

    def do_GET(self) -> None:
        path = self.server.path
        if unquote(self.path.split("?", 1)[0]) != "/" + path.name:
            self.send_error(404, "File not found")
            return
        try:
            size = path.stat().st_size
            with path.open("rb") as handle:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                shutil.copyfileobj(handle, self.wfile)
        finally:
            self.server.served = True

    def log_message(self, format: str, *args: object) -> None:
        log.info("%s - %s", self.address_string(), format % args)


def serve_once(
    path: Path,
    port: int = DEFAULT_PORT,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_ready: Callable[[int], None] | None = None,
    recipe: bool = True,
) -> bool:
    """Serve ``path`` until its one GET is answered; False if ``timeout_s`` passed first.

    ``on_ready(port)`` runs once the socket listens (``port=0`` picks a free port); then
    ``remote_recipe`` for that port is written to stderr (``recipe=False``: not).
    """
    if not path.is_file():
        raise TracekitError(path, "no such file")
    try:
        server = _OnceServer(path, port)
    except OSError as exc:
        raise TracekitError(
            None, f"cannot listen on {HOST}:{port}: {exc.strerror or exc} (try --port)"
        ) from None
    deadline = time.monotonic() + timeout_s
    with server:
        bound = server.server_address[1]
        if on_ready is not None:
            on_ready(bound)
        if recipe:
            sys.stderr.write(remote_recipe(path, bound))
            sys.stderr.flush()
        while not server.served:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            server.timeout = min(left, 1.0)
            server.handle_request()
    return True


def open_browser(url: str) -> bool:
    """Open ``url`` in a graphical browser; False where there is none.

    Console browsers (lynx, w3m, … which ``webbrowser`` falls back to without a display)
    would block the terminal and cannot run the UI, so they count as no browser.
    """
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    if type(browser) is webbrowser.GenericBrowser:  # a console browser
        return False
    try:
        return bool(browser.open(url, new=2))
    except (OSError, webbrowser.Error) as exc:  # a broken browser entry: print the URL
        log.info("browser failed: %s", exc)
        return False


__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT_S",
    "UI_ORIGIN",
    "open_browser",
    "remote_recipe",
    "serve_once",
    "ui_url",
]
