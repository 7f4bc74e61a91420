"""tracekit open: the SSH port-forwarding recipe, with the port actually bound."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.builders import cpu_op, write_trace
from tests.test_open_ui import _free_port, _get, _wait_listening
from tracekit.cli_export import open_command
from tracekit.open_ui import remote_recipe, serve_once, ui_url


def test_recipe_names_the_port_the_url_and_the_file(tmp_path: Path) -> None:
    trace = tmp_path / "run.pftrace"
    text = remote_recipe(trace, 9123)
    assert "ssh -L 9123:127.0.0.1:9123 " in text
    assert ui_url("run.pftrace", 9123) in text
    assert "ui.perfetto.dev" in text and str(trace.resolve()) in text


def test_serve_once_prints_the_recipe_for_the_bound_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.pftrace"
    trace.write_bytes(b"")
    bound: list[int] = []
    assert serve_once(trace, 0, timeout_s=0.2, on_ready=bound.append) is False
    err = capsys.readouterr().err
    assert bound and bound[0] != 0
    assert f"ssh -L {bound[0]}:127.0.0.1:{bound[0]} " in err
    assert serve_once(trace, 0, timeout_s=0.1, recipe=False) is False
    assert capsys.readouterr().err == ""


def test_open_command_prints_the_recipe_on_stderr(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "rank0.pt.trace.json.gz", [cpu_op("aten::mm", 0, 10)])
    port = _free_port()
    results: list[Result] = []
    args = [str(path), "--port", str(port), "--no-browser", "--timeout", "30"]
    thread = threading.Thread(target=lambda: results.append(CliRunner().invoke(open_command, args)))
    thread.start()
    _wait_listening(port, thread)
    status, _, _ = _get(port, "/rank0.pftrace")
    thread.join(20)
    (result,) = results
    assert result.exit_code == 0 and status == 200, result.output
    assert f"ssh -L {port}:127.0.0.1:{port} " in result.stderr
    assert "ssh -L" not in result.stdout  # stdout keeps just the URL
