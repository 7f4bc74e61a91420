"""tracekit open: one GET on loopback with the CORS header ui.perfetto.dev needs, then exit."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace as PbTrace

from tests.builders import cpu_op, write_trace
from tracekit.cli_export import is_export, open_command
from tracekit.export import export
from tracekit.open_ui import UI_ORIGIN, serve_once, ui_url


def _get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers={"Origin": UI_ORIGIN})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and thread.is_alive():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the server never listened")


def test_serves_one_get_with_cors_then_exits(tmp_path: Path) -> None:
    trace = tmp_path / "my run.pftrace"
    trace.write_bytes(b"\x0a\x00" * 1000)
    ready = threading.Event()
    bound: list[int] = []
    served: list[bool] = []

    def on_ready(port: int) -> None:
        bound.append(port)
        ready.set()

    thread = threading.Thread(
        target=lambda: served.append(serve_once(trace, 0, timeout_s=20, on_ready=on_ready))
    )
    thread.start()
    assert ready.wait(10)
    port = bound[0]
    status, _, _ = _get(port, "/other.pftrace")  # a wrong path neither serves nor stops
    assert status == 404 and thread.is_alive()
    status, headers, _ = _get(port, "/my%20run.pftrace", method="OPTIONS")  # nor a preflight
    assert status == 204 and headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert thread.is_alive()
    status, headers, body = _get(port, "/my%20run.pftrace")
    assert status == 200 and body == trace.read_bytes()
    assert headers["Access-Control-Allow-Origin"] == "https://ui.perfetto.dev"
    assert headers["Content-Length"] == str(len(body))
    thread.join(10)
    assert not thread.is_alive() and served == [True]
    with pytest.raises(OSError):  # the socket is closed: nothing answers a second GET
        _get(port, "/my%20run.pftrace")


def test_gives_up_after_the_timeout(tmp_path: Path) -> None:
    trace = tmp_path / "t.pftrace"
    trace.write_bytes(b"")
    began = time.monotonic()
    assert serve_once(trace, 0, timeout_s=0.3) is False
    assert time.monotonic() - began < 5


def test_ui_url() -> None:
    assert (
        ui_url("run.pftrace") == "https://ui.perfetto.dev/#!/?url=http://127.0.0.1:9001/run.pftrace"
    )


def _open_in_thread(args: list[str]) -> tuple[threading.Thread, list[Result]]:
    results: list[Result] = []
    thread = threading.Thread(target=lambda: results.append(CliRunner().invoke(open_command, args)))
    thread.start()
    return thread, results


def test_open_command_exports_a_run_then_serves_it(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "rank0.pt.trace.json.gz", [cpu_op("aten::mm", 0, 10)])
    assert not is_export(path)
    port = _free_port()
    thread, results = _open_in_thread(
        [str(path), "--port", str(port), "--no-browser", "--timeout", "30"]
    )
    _wait_listening(port, thread)
    status, headers, body = _get(port, "/rank0.pftrace")
    thread.join(20)
    assert not thread.is_alive()
    (result,) = results
    assert result.exit_code == 0, result.output
    assert status == 200 and headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert ui_url("rank0.pftrace", port) in result.output
    parsed = PbTrace()
    parsed.ParseFromString(body)
    names = {p.track_descriptor.process.process_name for p in parsed.packet}
    assert "rank 0" in names


def test_open_command_serves_an_export_as_it_is(tmp_path: Path) -> None:
    source = write_trace(tmp_path / "t.json.gz", [cpu_op("aten::mm", 0, 10)])
    out = tmp_path / "t.json"
    export(source, out, "json")
    assert is_export(out)
    port = _free_port()
    thread, results = _open_in_thread([str(out), "--port", str(port), "--no-browser"])
    _wait_listening(port, thread)
    status, _, body = _get(port, "/t.json")
    thread.join(20)
    assert status == 200 and body == out.read_bytes()
    assert results[0].exit_code == 0


def test_open_command_port_in_use_is_one_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.pftrace"
    trace.write_bytes(b"")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(open_command, [str(trace), "--port", str(port), "--no-browser"])
    assert result.exit_code == 2
    assert "cannot listen on 127.0.0.1" in result.output
