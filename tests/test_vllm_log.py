"""vLLM's periodic stats log lines as coarse KV records: parsing and the clock (exact figures)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from analyzers.read.vllm_log import LogRecord, parse, read_logs
from tracekit.core import rundir
from tracekit.core.errors import TracekitError

S = 1_000_000_000
HALF = S // 2
V1 = (
    "Avg prompt throughput: 12.3 tokens/s, Avg generation throughput: 45.6 tokens/s, "
    "Running: {r} reqs, Waiting: {w} reqs, {dev} KV cache usage: {kv}%, "
    "Prefix cache hit rate: 0.0%"
)


def v1(stamp: str, engine: int, r: int, w: int, kv: str, dev: str = "CPU") -> str:
    return f"(APIServer pid=7) INFO {stamp} [loggers.py:335] Engine {engine:03d}: " + V1.format(
        r=r, w=w, kv=kv, dev=dev
    )


def epoch_ns(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp()) * S


def make_run(root: Path, stdout: str, started_at: str | None, stderr: str = "") -> Path:
    run = root / "run"
    (run / rundir.LOGS).mkdir(parents=True)
    (run / rundir.LOGS / "stdout.log").write_text(stdout)
    (run / rundir.LOGS / "stderr.log").write_text(stderr)
    return run


def manifest(started_at: str | None) -> dict[str, object]:
    return {"started_at": started_at} if started_at else {}


def test_parse_formats_colours_and_garbage() -> None:
    coloured = (
        "\x1b[0;36m(APIServer pid=7)\x1b[0;0m \x1b[32mINFO\x1b[0m \x1b[90m11-22 08:31:02\x1b[0m "
        "\x1b[90m[loggers.py:335]\x1b[0m Engine 001: " + V1.format(r=4, w=2, kv="97.5", dev="GPU")
    )
    text = "\n".join(
        [
            "(APIServer pid=7) INFO 11-22 08:30:50 [api_utils.py:286] non-default args: {}",
            coloured,
            # vLLM v0: no engine prefix; swapped requests wait too; GPU cache before CPU swap
            "INFO 11-22 08:31:12 metrics.py:351] Avg prompt throughput: 0.0 tokens/s, Avg "
            "generation throughput: 1.0 tokens/s, Running: 3 reqs, Swapped: 1 reqs, Pending: "
            "2 reqs, GPU KV cache usage: 50.0%, CPU KV cache usage: 10.0%.",
            "WARNING 11-22 08:31:13 scheduler.py:1057] Sequence group 9 is preempted by "
            "PreemptionMode.RECOMPUTE mode because there is not enough KV cache space. "
            "total_num_cumulative_preemption=51",
            v1("11-22 08:31:14", 0, 5, 0, "12.0").replace(
                "Waiting: 0 reqs,", "Waiting: 0 reqs, Preemptions: 3,"
            ),
            # skipped: aggregated over engines, no KV usage, torn, garbage
            "INFO 11-22 08:31:15 [loggers.py:335] 2 Engines Aggregated: "
            + V1.format(r=8, w=0, kv="10.0", dev="GPU"),
            "INFO 11-22 08:31:16 [loggers.py:335] Engine 000: Avg prompt throughput: 1.0 "
            "tokens/s, Avg generation throughput: 2.0 tokens/s, Running: 1 reqs",
            "\x00\xff garbage Engine 000: Avg prompt throughput: Running: 1",
            "INFO 13-45 99:99:99 Engine 000: " + V1.format(r=1, w=1, kv="1.0", dev="GPU"),
        ]
    )
    log = parse(text)
    assert log.first_stamp == (11, 22, 8, 30, 50)
    assert [
        (li.stamp[2:], li.engine, li.running, li.waiting, li.kv_usage, li.preemptions)
        for li in log.lines
        if li.cumulative_preemptions is None
    ] == [
        ((8, 31, 2), 1, 4, 2, 0.975, None),
        ((8, 31, 12), 0, 3, 3, 0.5, None),
        ((8, 31, 14), 0, 5, 0, 0.12, 3),
    ]
    assert [li.cumulative_preemptions for li in log.lines] == [None, None, 51, None]
    assert log.skipped == 2  # the aggregated line and the one without KV usage
    assert parse("no vLLM here\n\n").lines == ()


def test_records_on_the_traces_clock(tmp_path: Path) -> None:
    """UTC logs: each line's mid-second on the epoch clock; a record covers the interval
    since its engine's previous line (the first one: the logging interval)."""
    lines = [
        "INFO 11-22 08:30:58 [api_utils.py:286] non-default args: {}",
        v1("11-22 08:31:02", 0, 4, 2, "95.0"),
        v1("11-22 08:31:02", 1, 4, 0, "40.0"),
        v1("11-22 08:31:03", 0, 4, 3, "97.5"),
        v1("11-22 08:31:03", 1, 3, 1, "91.3"),
        v1("11-22 08:31:04", 0, 2, 0, "50.0"),
    ]
    start = "2026-11-22T08:30:57.400+00:00"
    run = make_run(tmp_path, "\n".join(lines) + "\n", start)
    records = read_logs(run, manifest(start))
    t = epoch_ns("2026-11-22T08:31:02+00:00") + HALF
    assert [
        (r.engine, r.ts_ns - t, r.logged_ns - t, r.interval_ns, r.running, r.waiting, r.kv_usage)
        for r in records
    ] == [
        (0, -S, 0, S, 4, 2, 0.95),
        (1, -S, 0, S, 4, 0, 0.4),
        (0, 0, S, S, 4, 3, 0.975),
        (1, 0, S, S, 3, 1, 0.913),
        (0, S, 2 * S, S, 2, 0, 0.5),
    ]
    assert all(isinstance(r, LogRecord) and r.preemptions == 0 for r in records)
    basis = records[0].basis
    assert basis.startswith("vLLM log lines: 5 periodic stats line(s) in logs/stdout.log")
    assert "engine(s) 0, 1, one every ~1 s" in basis
    assert "not per step" in basis and "preemptions are not measured here" in basis
    assert "from the manifest's started_at (year 2026, UTC offset +00:00" in basis


def test_local_time_zone_and_year_from_the_start(tmp_path: Path) -> None:
    """Lines in UTC+05:30 local time; a run that starts on 31 December and logs in January."""
    start = "2026-12-31T18:29:58.000+00:00"  # 23:59:58 in UTC+05:30
    text = "\n".join(
        [
            "INFO 12-31 23:59:59 [api_utils.py:286] non-default args: {}",
            v1("01-01 00:00:10", 0, 1, 1, "99.0"),
            v1("01-01 00:00:20", 0, 1, 1, "99.0"),
        ]
    )
    records = read_logs(make_run(tmp_path, text, start), manifest(start))
    first = epoch_ns("2026-12-31T18:30:10+00:00") + HALF
    assert [(r.logged_ns - first, r.interval_ns) for r in records] == [
        (0, 10 * S),
        (10 * S, 10 * S),
    ]
    assert "(year 2026, UTC offset +05:30" in records[0].basis


def test_no_started_at_means_no_records(tmp_path: Path) -> None:
    """Without the manifest's start time nothing anchors the lines' local clock."""
    text = "\n".join([v1("11-22 05:31:02", 0, 2, 1, "90.0"), v1("11-22 05:31:12", 0, 2, 1, "90.0")])
    assert read_logs(make_run(tmp_path, text, None), {}) == ()


def test_interval_gaps_and_v0_preemption_warnings(tmp_path: Path) -> None:
    """v0 lines (engine 0), 10 s apart with an idle gap; warnings' cumulative counts are
    counted into the line that follows them (the last line takes the ones after it)."""
    v0 = (
        "INFO 11-22 08:{t} metrics.py:351] Avg prompt throughput: 0.0 tokens/s, Avg generation "
        "throughput: 9.0 tokens/s, Running: 2 reqs, Swapped: 0 reqs, Pending: {p} reqs, "
        "GPU KV cache usage: 96.0%, CPU KV cache usage: 0.0%."
    )
    warn = (
        "WARNING 11-22 08:{t} scheduler.py:1057] Sequence group 3 is preempted by "
        "PreemptionMode.RECOMPUTE mode because there is not enough KV cache space. "
        "total_num_cumulative_preemption={n}"
    )
    text = "\n".join(
        [
            warn.format(t="31:05", n=1),
            v0.format(t="31:10", p=4),
            warn.format(t="31:15", n=51),
            v0.format(t="31:20", p=3),
            v0.format(t="35:00", p=0),  # after an idle gap: covers one interval only
            warn.format(t="35:01", n=101),
        ]
    )
    start = "2026-11-22T08:31:00.000+00:00"
    records = read_logs(make_run(tmp_path, text, start), manifest(start))
    t = epoch_ns("2026-11-22T08:31:10+00:00") + HALF
    assert [(r.ts_ns - t, r.interval_ns, r.waiting, r.preemptions) for r in records] == [
        (-10 * S, 10 * S, 4, 1),
        (0, 10 * S, 3, 50),
        (220 * S, 10 * S, 0, 50),
    ]
    assert "vLLM v0's warnings" in records[0].basis


def test_no_records_without_stats_lines_or_logs(tmp_path: Path) -> None:
    start = "2026-11-22T08:31:00.000+00:00"
    run = make_run(tmp_path, "INFO 11-22 08:31:01 [x.py:1] hello\nTraceback ...\n", start)
    assert read_logs(run, manifest(start)) == ()
    assert read_logs(tmp_path / "nothing", manifest(start)) == ()
    far = make_run(tmp_path / "far", v1("03-01 08:31:02", 0, 1, 1, "99.0"), start)
    assert read_logs(far, manifest(start)) == ()  # another day than the run: not aligned


def test_unreadable_log_is_an_error(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / rundir.LOGS / "stdout.log").mkdir(parents=True)  # a folder where the log should be
    with pytest.raises(TracekitError, match=r"stdout\.log: cannot read log"):
        read_logs(run, {})
