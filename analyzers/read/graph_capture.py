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
failure: the replay is then costed without it.
"""

from __future__ import annotations

import gzip
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec

from analyzers.planning.captured_cost import CapturedCall, SubtreeOp, call_cost
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


class _Event(msgspec.Struct):
    ph: str = ""
    cat: str = ""
    name: str = ""
    ts: float = 0.0
    dur: float = 0.0
    tid: Any = None
    args: dict[str, Any] = msgspec.field(default_factory=dict)


class _Doc(msgspec.Struct):
    traceEvents: list[_Event] = msgspec.field(default_factory=list)  # noqa: N815 (Kineto's key)


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
    """Every graph captured in one capture trace (a file may capture several)."""
    try:
        raw = path.read_bytes()
        text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        doc = msgspec.json.decode(text, type=_Doc)
    except (OSError, EOFError, gzip.BadGzipFile, msgspec.DecodeError) as exc:
        raise TracekitError(path, f"not a readable Kineto trace ({exc})") from None
    events = [e for e in doc.traceEvents if e.ph == "X"]
    out = []
    for tid, begin, end in _capture_spans(events):
        mine = [e for e in events if e.tid == tid]
        out.append(_graph(path.name, mine, begin, end))
    return out


def _capture_spans(events: list[_Event]) -> Iterator[tuple[Any, float, float]]:
    """(thread, begin, end) of each stream capture, begin and end paired per thread."""
    open_at: dict[Any, float] = {}
    for e in sorted((e for e in events if e.cat in _RUNTIME), key=lambda e: e.ts):
        if _BEGIN.search(e.name):
            open_at[e.tid] = e.ts
        elif _END.search(e.name) and e.tid in open_at:
            yield e.tid, open_at.pop(e.tid), e.ts


def _graph(source: str, events: list[_Event], begin: float, end: float) -> CapturedGraph:
    launches = sorted(
        (
            e
            for e in events
            if e.cat in _RUNTIME and begin <= e.ts <= end and isinstance(e.args.get("kernel"), str)
        ),
        key=lambda e: e.ts,
    )
    ops = sorted((e for e in events if e.cat == "cpu_op"), key=lambda e: (e.ts, -e.dur))
    calls: list[CapturedCall] = []
    call_index: dict[int, int] = {}
    call_of = []
    layers: dict[int, int] = {}
    layer_at = _layers(events)
    for stack, launch in zip(_stacks(ops, [e.ts for e in launches]), launches, strict=True):
        found = -1
        for at in stack:
            if at not in call_index:
                cost = call_cost(_signature(ops[at]), _subtree(ops, at))
                call_index[at] = -1 if cost is None else len(calls)
                if cost is not None:
                    calls.append(cost)
            if call_index[at] >= 0:
                found = call_index[at]
                break
        call_of.append(found)
        if found >= 0:
            layers.setdefault(found, layer_at(launch.ts))
    return CapturedGraph(
        source,
        _label(events, begin),
        tuple(str(e.args["kernel"]) for e in launches),
        tuple(call_of),
        tuple(calls),
        tuple(layers.get(i, -1) for i in range(len(calls))),
    )


def _layers(events: list[_Event]) -> Callable[[float], int]:
    """Time → the decoder layer whose module frame holds it (-1: none)."""
    frames = sorted(
        (e.ts, e.ts + e.dur, int(m.group(1)))
        for e in events
        if e.cat == "python_function" and (m := _LAYER.match(e.name))
    )
    starts = [f[0] for f in frames]

    def layer_at(t: float) -> int:
        at = bisect_right(starts, t) - 1
        return frames[at][2] if at >= 0 and t <= frames[at][1] else -1

    return layer_at


def _stacks(ops: list[_Event], times: list[float]) -> Iterator[list[int]]:
    """Per time (ascending): the indices of the ops live at it, outermost first."""
    stack: list[int] = []
    nxt = 0
    for t in times:
        while nxt < len(ops) and ops[nxt].ts <= t:
            while stack and ops[stack[-1]].ts + ops[stack[-1]].dur < ops[nxt].ts:
                stack.pop()
            stack.append(nxt)
            nxt += 1
        while stack and ops[stack[-1]].ts + ops[stack[-1]].dur < t:
            stack.pop()
        yield [i for i in stack if ops[i].ts + ops[i].dur >= t]


def _subtree(ops: list[_Event], at: int) -> list[SubtreeOp]:
    """The ops inside ``ops[at]`` (itself included), in start order."""
    end = ops[at].ts + ops[at].dur
    out = []
    for e in ops[at:]:
        if e.ts > end:
            break
        concrete = e.args.get("Concrete Inputs")
        texts = tuple(str(c) for c in concrete) if isinstance(concrete, list) else ()
        out.append(SubtreeOp(_signature(e), texts))
    return out


def _signature(e: _Event) -> Signature:
    dims, types = e.args.get("Input Dims"), e.args.get("Input type")
    if not isinstance(dims, list) or not isinstance(types, list):
        return Signature(e.name, (), ())
    return Signature(e.name, tuple(_dims(d) for d in dims), tuple(str(t) for t in types))


def _dims(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_dims(v) for v in value)
    return value if isinstance(value, int) else -1


def _label(events: list[_Event], begin: float) -> str:
    around = [
        e
        for e in events
        if e.cat == "user_annotation" and e.ts <= begin <= e.ts + e.dur and "capture" in e.name
    ]
    return min(around, key=lambda e: e.dur).name if around else ""
