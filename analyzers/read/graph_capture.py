"""Graph-capture traces: the ops, with their input shapes, that launched each kernel of a
CUDA/HIP graph while it was captured.

A replayed graph's kernels share the graph launch's correlation id and carry no op. vLLM
(``--profiler-config.capture_torch_profiler``) and SGLang profile the capture itself: between
``cudaStreamBeginCapture`` and ``cudaStreamEndCapture`` every kernel launch is recorded with its
kernel's name (``args.kernel``) inside the ops that issued it, with ``record_shapes``. Each
capture becomes a ``CapturedGraph``: its kernels in launch order, and per kernel the op call
that costs it — the outermost op of its call stack that ``analyzers.planning.captured_cost``
can cost (the same rule as for a trace's own ops) — and that call's decoder layer, where
the capture recorded module frames (``with_stack``). ``analyzers.rank.graph_merge`` matches a
replay to the graph with the same kernel sequence.

Capture traces live in a ``capture_traces/`` folder beside the rank traces (where vLLM writes
them, and where ``tracekit capture`` keeps them). A file that cannot be read is a note, not a
failure: the replay is then costed without it. vLLM profiles every batch size it captures in
one file, so the file is read streaming (``analyzers.read.json_stream``), keeping only runtime
calls, ops, capture annotations and decoder-layer frames, and each thread is indexed once for
all its graphs.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from pathlib import Path
from typing import Any

import msgspec

from analyzers.planning.captured_cost import CapturedCall, SubtreeOp, call_cost
from analyzers.read.json_stream import Reader
from tracekit.core import rundir
from tracekit.core.errors import TracekitError
from tracekit.core.trace_model import Signature

CAPTURE_FOLDER = rundir.CAPTURE_TRACES
#: vLLM's and SGLang's list of the capture files (batch size, mode): not a trace
EXECUTION_DETAILS = "execution_details.json"
_BEGIN = re.compile(r"StreamBeginCapture", re.IGNORECASE)
_END = re.compile(r"StreamEndCapture", re.IGNORECASE)
_RUNTIME = ("cuda_runtime", "cuda_driver")
#: a decoder layer's module frame (``with_stack``): ``nn.Module: Qwen3DecoderLayer_7``, the
#: suffix being the instance's order of first call, i.e. the layer's index
_LAYER = re.compile(r"^nn\.Module: \w*(?:DecoderLayer|TransformerBlock)_(\d+)$")


class _Args(msgspec.Struct):
    """The args the capture merge reads (msgspec skips the rest while decoding)."""

    kernel: Any = None
    dims: Any = msgspec.field(default=None, name="Input Dims")
    types: Any = msgspec.field(default=None, name="Input type")
    concrete: Any = msgspec.field(default=None, name="Concrete Inputs")


class _Event(msgspec.Struct):
    ph: Any = ""
    cat: Any = ""
    name: Any = ""
    ts: float = 0.0
    dur: float = 0.0
    tid: int | str | None = None
    args: _Args | None = None


_EVENTS = msgspec.json.Decoder(list[_Event])
_NO_ARGS = _Args()


@dataclass(frozen=True)
class CapturedGraph:
    source: str  # the capture trace's file name
    label: str  # the annotation around the capture (vLLM: capture_<batch>_<mode>), or ""
    kernels: tuple[str, ...]  # kernel names in launch order
    call_of: tuple[int, ...]  # per kernel: index into ``calls``, -1 where no op costs it
    calls: tuple[CapturedCall, ...]
    #: per call: the decoder layer it ran in (its module frame), -1 where none was recorded
    layer_of: tuple[int, ...] = ()


@dataclass(frozen=True)
class Captures:
    folder: str
    graphs: tuple[CapturedGraph, ...]
    notes: tuple[str, ...]


def captures_beside(trace_path: str) -> Captures | None:
    """The capture traces in ``capture_traces/`` beside ``trace_path``; None without one."""
    folder = Path(trace_path).parent / CAPTURE_FOLDER
    return _captures(str(folder)) if folder.is_dir() else None


@lru_cache(maxsize=8)
def _captures(folder: str) -> Captures:
    graphs: list[CapturedGraph] = []
    notes: list[str] = []
    files = sorted(
        p
        for p in Path(folder).iterdir()
        if p.name.endswith((".json", ".json.gz")) and p.name != EXECUTION_DETAILS
    )
    for path in files:
        try:
            graphs += read_capture(path)
        except TracekitError as exc:
            notes.append(f"capture trace unreadable, replays costed without it: {exc}")
    return Captures(folder, tuple(graphs), tuple(notes))


def read_capture(path: Path) -> list[CapturedGraph]:
    """Every graph captured in one capture trace (a file may capture several: vLLM profiles
    all its batch sizes in one). Read streaming; only the events the merge uses are kept."""
    events = _read_events(path)
    threads: dict[Any, _Thread] = {}
    out = []
    for tid, begin, end in _capture_spans(events):
        if tid not in threads:
            threads[tid] = _Thread([e for e in events if e.tid == tid])
        out.append(threads[tid].graph(path.name, begin, end))
    return out


def _read_events(path: Path) -> list[_Event]:
    """The complete events the merge reads: runtime calls, ops, capture annotations, layer
    frames. Raises TracekitError naming the file where it is not a readable trace."""
    reader = Reader(path)
    first = reader.peek()
    if first < 0:
        raise TracekitError(path, "empty file")
    kept: list[_Event] = []
    found = False
    if first == ord("["):
        found = _keep(reader, kept)
    elif first == ord("{"):
        for key in reader.members():
            if key == "traceEvents" and reader.peek() == ord("["):
                found = _keep(reader, kept)
            else:
                reader.value()
    reader.end()
    if not found:
        raise TracekitError(path, "not a trace: no 'traceEvents'")
    return kept


def _keep(reader: Reader, kept: list[_Event]) -> bool:
    for chunk, _, _ in reader.array(_EVENTS):
        kept += [e for e in chunk if e.ph == "X" and _wanted(e)]
    return True


def _wanted(e: _Event) -> bool:
    if e.cat in _RUNTIME or e.cat == "cpu_op":
        return True
    if e.cat == "user_annotation":
        return "capture" in str(e.name)
    return e.cat == "python_function" and _LAYER.match(str(e.name)) is not None


def _capture_spans(events: list[_Event]) -> Iterator[tuple[Any, float, float]]:
    """(thread, begin, end) of each stream capture, begin and end paired per thread."""
    open_at: dict[Any, float] = {}
    for e in sorted((e for e in events if e.cat in _RUNTIME), key=lambda e: e.ts):
        if _BEGIN.search(str(e.name)):
            open_at[e.tid] = e.ts
        elif _END.search(str(e.name)) and e.tid in open_at:
            yield e.tid, open_at.pop(e.tid), e.ts


class _Thread:
    """One thread's capture-relevant events, sorted and indexed once for all its graphs."""

    def __init__(self, events: list[_Event]) -> None:
        self.ops = sorted((e for e in events if e.cat == "cpu_op"), key=lambda e: (e.ts, -e.dur))
        self.starts = [e.ts for e in self.ops]
        self.reach = list(accumulate((e.ts + e.dur for e in self.ops), max))
        runtime = [e for e in events if e.cat in _RUNTIME and isinstance(_args(e).kernel, str)]
        self.launches = sorted(runtime, key=lambda e: e.ts)
        self.launch_ts = [e.ts for e in self.launches]
        self.annotations = [e for e in events if e.cat == "user_annotation"]
        frames = sorted(
            (e.ts, e.ts + e.dur, int(m.group(1)))
            for e in events
            if e.cat == "python_function" and (m := _LAYER.match(str(e.name)))
        )
        self.frames, self.frame_ts = frames, [f[0] for f in frames]

    def graph(self, source: str, begin: float, end: float) -> CapturedGraph:
        lo, hi = bisect_left(self.launch_ts, begin), bisect_right(self.launch_ts, end)
        launches = self.launches[lo:hi]
        calls: list[CapturedCall] = []
        call_index: dict[int, int] = {}
        call_of: list[int] = []
        layers: dict[int, int] = {}
        first = bisect_left(self.reach, begin)  # ops before it all end before the capture
        for stack, launch in zip(self._stacks(first, launches), launches, strict=True):
            found = -1
            for at in stack:
                if at not in call_index:
                    cost = call_cost(_signature(self.ops[at]), self._subtree(at))
                    call_index[at] = -1 if cost is None else len(calls)
                    if cost is not None:
                        calls.append(cost)
                if call_index[at] >= 0:
                    found = call_index[at]
                    break
            call_of.append(found)
            if found >= 0:
                layers.setdefault(found, self._layer_at(launch.ts))
        return CapturedGraph(
            source,
            self._label(begin),
            tuple(str(_args(e).kernel) for e in launches),
            tuple(call_of),
            tuple(calls),
            tuple(layers.get(i, -1) for i in range(len(calls))),
        )

    def _stacks(self, first: int, launches: list[_Event]) -> Iterator[list[int]]:
        """Per launch (ascending): the indices of the ops live at it, outermost first."""
        ops, nxt = self.ops, first
        stack: list[int] = []
        for launch in launches:
            t = launch.ts
            while nxt < len(ops) and ops[nxt].ts <= t:
                while stack and ops[stack[-1]].ts + ops[stack[-1]].dur < ops[nxt].ts:
                    stack.pop()
                stack.append(nxt)
                nxt += 1
            while stack and ops[stack[-1]].ts + ops[stack[-1]].dur < t:
                stack.pop()
            yield [i for i in stack if ops[i].ts + ops[i].dur >= t]

    def _subtree(self, at: int) -> list[SubtreeOp]:
        """The ops inside ``ops[at]`` (itself included), in start order."""
        end = self.ops[at].ts + self.ops[at].dur
        out = []
        for e in self.ops[at : bisect_right(self.starts, end)]:
            concrete = _args(e).concrete
            texts = tuple(str(c) for c in concrete) if isinstance(concrete, list) else ()
            out.append(SubtreeOp(_signature(e), texts))
        return out

    def _layer_at(self, t: float) -> int:
        """The decoder layer whose module frame holds time ``t`` (-1: none)."""
        at = bisect_right(self.frame_ts, t) - 1
        return self.frames[at][2] if at >= 0 and t <= self.frames[at][1] else -1

    def _label(self, begin: float) -> str:
        around = [e for e in self.annotations if e.ts <= begin <= e.ts + e.dur]
        return str(min(around, key=lambda e: e.dur).name) if around else ""


def _args(e: _Event) -> _Args:
    return e.args or _NO_ARGS


def _signature(e: _Event) -> Signature:
    args = _args(e)
    if not isinstance(args.dims, list) or not isinstance(args.types, list):
        return Signature(str(e.name), (), ())
    dims = tuple(_dims(d) for d in args.dims)
    return Signature(str(e.name), dims, tuple(str(t) for t in args.types))


def _dims(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_dims(v) for v in value)
    return value if isinstance(value, int) else -1
