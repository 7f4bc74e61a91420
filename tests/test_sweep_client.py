"""tracekit sweep --client: a server command (the fake vLLM's ``serve``) driven per layout."""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import Result

from collectors.sweep_client import CLIENT_LOG, STOP_NOTE
from tests.test_sweep_cmd import OPTIONS, fake
from tracekit.cli_sweep import sweep_command
from tracekit.core import rundir
from tracekit.core.layout import Layout
from tracekit.sweep import read_record

__all__ = ["fake"]  # the fixture


def _sweep(out: Path, fake: Path, layouts: str, client: str) -> Result:
    from click.testing import CliRunner

    args = ["--layouts", layouts, "--out", str(out), "--client", client, *OPTIONS]
    command = [sys.executable, str(fake), "serve", "M", "--port", "8000"]
    return CliRunner().invoke(sweep_command, [*args, "--", *command], env={"FAKE_FAIL": ""})


def _client(code: str) -> str:
    return f"{sys.executable} -c '{code}'"


def test_client_drives_each_layout_and_stops_the_server(tmp_path: Path, fake: Path) -> None:
    out = tmp_path / "sweep"
    client = _client('import time; time.sleep(0.5); print("client: 24 requests done")')
    got = _sweep(out, fake, "tp=1,dp=2", client)
    assert got.exit_code == 0, got.output
    record = read_record(out)
    assert record is not None and record.client is not None
    assert record.client[-1].endswith('print("client: 24 requests done")')
    assert record.runs["dp=2"].argv[-2:] == ["--data-parallel-size", "2"]
    for label in ("tp=1", "dp=2"):
        entry = record.runs[label]
        assert (entry.status, entry.client_exit_code, entry.plugin_layout) == ("complete", 0, None)
        manifest = rundir.read_manifest(out / label)
        assert (manifest.status, manifest.notes[-1]) == ("complete", STOP_NOTE)
        log = (out / label / rundir.LOGS / CLIENT_LOG).read_text()
        assert log == "client: 24 requests done\n"
    assert rundir.read_manifest(out / "dp=2").layout == Layout(dp=2)
    assert "tracekit compare: 2 run(s)" in got.stdout
    # resuming keeps both; another client is another sweep
    again = _sweep(out, fake, "tp=1,dp=2", client)
    assert again.exit_code == 0 and again.stderr.count("kept") == 2, again.output
    other = _sweep(out, fake, "tp=1,dp=2", _client("pass"))
    assert other.exit_code == 2 and "holds a sweep of another command" in other.stderr


def test_failing_client_fails_its_layout(tmp_path: Path, fake: Path) -> None:
    out = tmp_path / "sweep"
    client = _client('import sys; print("client: server not ready"); sys.exit(4)')
    got = _sweep(out, fake, "tp=2", client)
    assert got.exit_code == 1, got.output
    record = read_record(out)
    assert record is not None
    entry = record.runs["tp=2"]
    assert (entry.status, entry.client_exit_code, entry.error) == (
        "failed",
        4,
        "client exit code 4",
    )
    assert entry.last_line == "client: server not ready"
    assert rundir.read_manifest(out / "tp=2").status == "interrupted"  # the server was stopped
    assert "no layout completed" in got.stdout
