"""Chrome trace-event JSON sink (``--format json``): the same timeline for JSON-only tools.

Written in batches with orjson, so the trace is never held whole. Layout::

    {"otherData": {"exporter": "tracekit …", "origin_ns": …}, "displayTimeUnit": "ns",
     "traceEvents": [ … ]}

``otherData`` comes first so a reader can tell a tracekit export from its first bytes.
Timestamps are microseconds **relative to ``origin_ns``** (the run's earliest timestamp):
absolute epoch nanoseconds do not fit a double at ns precision, relative ones do.
Processes and threads are ``M`` metadata events, slices ``X`` events (nested as on the
Perfetto tracks), counters ``C`` events, flows ``s`` / ``f`` (binding to the enclosing slice)
pairs, one per flow id.
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np
import orjson

from tracekit.core.version import __version__
from tracekit.export.timeline import Counter, Slices, Track

BATCH = 20_000
EXPORTER = f"tracekit {__version__}"
MARKER = b'{"otherData":{"exporter":"tracekit'


class ChromeJsonSink:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.origin = 0
        self.pending: list[dict[str, Any]] = []
        self.first = True
        self.tracks = 0
        self.slice_count = 0
        self.counter_values = 0

    def begin(self, origin_ns: int) -> None:
        self.origin = origin_ns
        head = {"exporter": EXPORTER, "origin_ns": origin_ns}
        self.out.write(b'{"otherData":' + orjson.dumps(head) + b',"displayTimeUnit":"ns",')
        self.out.write(b'"traceEvents":[')

    def track(self, track: Track) -> None:
        self.tracks += 1
        if track.kind == "counter":
            return
        if track.kind == "process":
            self._add(_meta("process_name", track.pid, 0, {"name": track.name}))
            self._add(_meta("process_sort_index", track.pid, 0, {"sort_index": track.order}))
            return
        self._add(_meta("thread_name", track.pid, track.tid, {"name": track.name}))
        self._add(_meta("thread_sort_index", track.pid, track.tid, {"sort_index": track.order}))

    def slices(self, batch: Slices) -> None:
        pid, tid = batch.track.pid, batch.track.tid
        ts = self._us(batch.start)
        dur = ((batch.end - batch.start) / 1000.0).tolist()
        args = batch.args
        for i, name in enumerate(batch.names):
            event: dict[str, Any] = {
                "ph": "X",
                "name": name,
                "cat": batch.category(i),
                "ts": ts[i],
                "dur": dur[i],
                "pid": pid,
                "tid": tid,
            }
            if args is not None and args[i]:
                event["args"] = args[i]
            self._add(event)
            for flow in batch.flows_out.get(i, ()):
                self._add(_flow("s", flow, ts[i], pid, tid))
            for flow in batch.flows_in.get(i, ()):
                self._add(_flow("f", flow, ts[i], pid, tid))
            if i in batch.flows_in_end:  # bound inside the slice, 1 ns before its end
                last = ts[i] + max(dur[i] - 0.001, 0.0)
                for flow in batch.flows_in_end[i]:
                    self._add(_flow("f", flow, last, pid, tid))
        self.slice_count += len(batch)

    def counter(self, series: Counter) -> None:
        name, pid = series.track.name, series.track.pid
        for ts, value in zip(self._us(series.ts), series.values.tolist(), strict=True):
            self._add({"ph": "C", "name": name, "ts": ts, "pid": pid, "args": {"value": value}})
        self.counter_values += len(series.ts)

    def close(self) -> None:
        self._flush()
        self.out.write(b"]}\n")

    def _us(self, ns: np.ndarray) -> list[float]:
        return ((ns - self.origin) / 1000.0).tolist()  # type: ignore[no-any-return]

    def _add(self, event: dict[str, Any]) -> None:
        self.pending.append(event)
        if len(self.pending) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        body = orjson.dumps(self.pending)[1:-1]
        self.out.write(body if self.first else b"," + body)
        self.first = False
        self.pending = []


def _meta(name: str, pid: int, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "M", "name": name, "pid": pid, "tid": tid, "args": args}


def _flow(phase: str, flow: int, ts: float, pid: int, tid: int) -> dict[str, Any]:
    event: dict[str, Any] = {
        "ph": phase,
        "id": flow,
        "name": "flow",
        "cat": "flow",
        "ts": ts,
        "pid": pid,
        "tid": tid,
    }
    if phase == "f":
        event["bp"] = "e"
    return event
