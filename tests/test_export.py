"""tracekit export: the .pftrace parses with perfetto's protos and holds the expected timeline.

Exact names and counts on runs built in code; structure on the real captures.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace as PbTrace
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import TracePacket, TrackEvent

import tracekit
from analyzers.engine.driver import settle_loaded
from analyzers.rank.rank_stages import RankState, run_stages
from tests.builders import annotation, cpu_op, kernel, runtime, write_trace
from tests.conftest import SAMPLE_TP2, shared
from tracekit.cli_export import export_command
from tracekit.core import rundir
from tracekit.core.layout import Layout
from tracekit.core.trace_model import Trace
from tracekit.export import export
from tracekit.export.build import BUCKET_LANE, REGIME_LANE, RUN_PROCESS, STEP_LANE

US = 1_000
BASE = 1_700_000_000_000_000_000
GEMM = "ampere_bf16_s16816gemm_bf16_128x128"
P2P = "ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)"
LAUNCH = "cudaLaunchKernel"


@dataclass
class Slice:
    name: str
    category: str
    start: int
    end: int = -1
    args: dict[str, Any] = field(default_factory=dict)
    flows_out: list[int] = field(default_factory=list)
    flows_in: list[int] = field(default_factory=list)


@dataclass
class Parsed:
    """A .pftrace read back the way trace processor reads a TrackEvent stream."""

    names: dict[int, str] = field(default_factory=dict)  # uuid → track / process / thread name
    kinds: dict[int, str] = field(default_factory=dict)
    parent: dict[int, int] = field(default_factory=dict)  # uuid → process uuid
    slices: dict[int, list[Slice]] = field(default_factory=lambda: defaultdict(list))
    counters: dict[int, list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))

    def processes(self) -> list[str]:
        return [n for u, n in self.names.items() if self.kinds[u] == "process"]

    def uuid(self, process: str, track: str | None = None) -> int:
        proc = next(u for u, n in self.names.items() if n == process and self.kinds[u] == "process")
        if track is None:
            return proc
        return next(u for u, n in self.names.items() if n == track and self.parent.get(u) == proc)

    def lane(self, process: str, track: str) -> list[Slice]:
        return self.slices[self.uuid(process, track)]

    def flows(self) -> tuple[Counter[int], Counter[int]]:
        out: Counter[int] = Counter()
        into: Counter[int] = Counter()
        for lane in self.slices.values():
            for s in lane:
                out.update(s.flows_out)
                into.update(s.flows_in)
        return out, into


def parse(path: Path) -> Parsed:
    trace = PbTrace()
    trace.ParseFromString(path.read_bytes())
    assert trace.packet[0].sequence_flags == TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
    got = Parsed()
    event_names: dict[int, str] = {}
    categories: dict[int, str] = {}
    pids: dict[int, int] = {}
    stacks: dict[int, list[Slice]] = defaultdict(list)
    timeline: list[tuple[int, int, list[int], list[int]]] = []  # ts, position, out, terminating
    for position, packet in enumerate(trace.packet):
        event_names.update({e.iid: e.name for e in packet.interned_data.event_names})
        categories.update({e.iid: e.name for e in packet.interned_data.event_categories})
        if packet.HasField("track_descriptor"):
            d = packet.track_descriptor
            if d.HasField("process"):
                got.names[d.uuid], got.kinds[d.uuid] = d.process.process_name, "process"
                pids[d.process.pid] = d.uuid
            elif d.HasField("thread"):
                got.names[d.uuid], got.kinds[d.uuid] = d.thread.thread_name, "thread"
                got.parent[d.uuid] = pids[d.thread.pid]
            else:
                got.names[d.uuid] = d.name
                got.kinds[d.uuid] = "counter" if d.HasField("counter") else "track"
                got.parent[d.uuid] = d.parent_uuid
        if not packet.HasField("track_event"):
            continue
        assert packet.sequence_flags & TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
        ev, uuid = packet.track_event, packet.track_event.track_uuid
        assert uuid in got.names, "an event before its track's descriptor"
        out, ending = list(ev.flow_ids), list(ev.terminating_flow_ids)
        timeline.append((packet.timestamp, position, out, ending))
        if ev.type == TrackEvent.TYPE_SLICE_BEGIN:
            args = {a.name: _value(a) for a in ev.debug_annotations}
            cat = categories[ev.category_iids[0]]
            s = Slice(event_names[ev.name_iid], cat, packet.timestamp, args=args)
            s.flows_out, s.flows_in = out, ending
            stacks[uuid].append(s)
            got.slices[uuid].append(s)
        elif ev.type == TrackEvent.TYPE_SLICE_END:
            top = stacks[uuid].pop()
            assert packet.timestamp >= top.start
            top.end = packet.timestamp
            top.flows_in = top.flows_in + ending
        elif ev.type == TrackEvent.TYPE_COUNTER:
            got.counters[uuid].append((packet.timestamp, ev.double_counter_value))
    assert not any(stacks.values()), "unterminated slices"
    # trace processor reads events in time order (ties: file order) and drops a flow whose
    # target comes before its source: none may be dropped
    active: set[int] = set()
    for _, _, out, ending in sorted(timeline, key=lambda e: (e[0], e[1])):
        active.update(out)
        assert set(ending) <= active, "a flow target before its source"
    return got


def _value(note: Any) -> Any:
    return getattr(note, note.WhichOneof("value"))


def _pp_run(tmp_path: Path) -> Path:
    """Two GPU pipeline stages: stage 0 computes then sends, stage 1 receives then computes."""
    run = tmp_path / "run"
    stage0 = [
        annotation("execute_context_1(8)_generation_0(0)", 0, 300),
        cpu_op("aten::mm", 5, 15),
        runtime(LAUNCH, 10, 5, corr=1),
        kernel(GEMM, 20, 100, stream=7, corr=1),
        cpu_op("nccl:send", 130, 20),
        runtime(LAUNCH, 135, 5, corr=2),
        kernel(P2P, 150, 50, stream=20, corr=2),
    ]
    stage1 = [
        cpu_op("nccl:recv", 130, 20),
        runtime(LAUNCH, 135, 5, corr=5),
        kernel(P2P, 140, 70, stream=20, corr=5),  # posted before the send: waits for it
        cpu_op("aten::mm", 215, 10),
        runtime(LAUNCH, 216, 4, corr=6),
        kernel(GEMM, 230, 70, stream=7, corr=6),
    ]
    for rank, events in enumerate((stage0, stage1)):
        write_trace(run / "traces" / f"w{rank}.pt.trace.json.gz", events, rank=rank, world=2)
    steps = run / rundir.STEPS
    steps.mkdir(parents=True)
    records = [
        rundir.StepRecord(ts_ns=t * US, running=r, waiting=w, kv_usage=kv)
        for t, r, w, kv in ((0, 1, 2, 0.25), (150, 2, 1, 0.5), (300, 3, 0, 0.75))
    ]
    (steps / "engine0.jsonl").write_bytes(b"\n".join(msgspec.json.encode(r) for r in records))
    manifest = rundir.Manifest(
        tracekit_version="0.1.0",
        status="complete",
        layout=Layout(pp=2),
        ranks=[rundir.RankEntry(f"w{r}.pt.trace.json.gz", rank=r, pp=r) for r in (0, 1)],
    )
    rundir.write_manifest(run, manifest)
    return run


def test_pp_run_processes_lanes_counters_flows(tmp_path: Path) -> None:
    out = tmp_path / "run.pftrace"
    summary = export(_pp_run(tmp_path), out)
    assert summary.flows == {"launch": 4, "pp": 1}
    got = parse(out)
    r0, r1 = "rank 0 (pp0)", "rank 1 (pp1)"
    assert got.processes() == [r0, r1, RUN_PROCESS]
    # both stages over the common window 140..200 µs (stage 1's device work starts at 140,
    # stage 0's ends at 200)
    buckets = [(s.name, (s.start // US, s.end // US)) for s in got.lane(r0, BUCKET_LANE)]
    assert buckets == [("host", (140, 150)), ("bubble", (150, 200))]
    families = [s.args["family"] for s in got.lane(r0, BUCKET_LANE)]
    assert families == ["host_activity", "p2p"]
    lane1 = [(s.name, (s.start // US, s.end // US)) for s in got.lane(r1, BUCKET_LANE)]
    assert lane1 == [("bubble", (140, 200))]
    (step,) = got.lane(r0, STEP_LANE)
    assert (step.name, step.args["prefill_tokens"], step.args["decode_tokens"]) == ("prefill", 8, 0)
    with pytest.raises(StopIteration):
        got.uuid(r1, STEP_LANE)  # no step annotations on stage 1
    assert {s.name for s in got.lane(r0, "stream 7")} == {GEMM}
    thread = got.lane(r0, "thread 101")
    step_name = "execute_context_1(8)_generation_0(0)"
    assert [s.name for s in thread] == [step_name, "aten::mm", LAUNCH, "nccl:send", LAUNCH]
    assert thread[1].category == "cpu_op" and thread[2].category == "runtime"
    # counters from steps/ on the engine's rank (stage 0 runs engine 0)
    assert got.counters[got.uuid(r0, "KV-cache usage (%)")] == [
        (0, 25.0),
        (150 * US, 50.0),
        (300 * US, 75.0),
    ]
    assert [v for _, v in got.counters[got.uuid(r0, "waiting requests")]] == [2.0, 1.0, 0.0]
    assert [v for _, v in got.counters[got.uuid(r0, "running requests")]] == [1.0, 2.0, 3.0]
    # flows: every id leaves one slice and ends at one slice
    out_ids, in_ids = got.flows()
    assert sorted(out_ids) == sorted(in_ids) and set(out_ids.values()) == {1}
    assert len(out_ids) == 4 + 1
    (send,) = [s for s in got.lane(r0, "stream 20")]
    (recv,) = [s for s in got.lane(r1, "stream 20")]
    (pp_flow,) = set(send.flows_out) & set(recv.flows_in)
    launches = [s for s in got.lane(r1, "thread 101") if s.name == LAUNCH]
    assert [len(s.flows_out) for s in launches] == [1, 1]
    assert recv.flows_in[0] in launches[0].flows_out  # launch → kernel at the recv's begin
    assert recv.flows_in[1] == pp_flow  # the recv began first: the PP flow lands at its end
    (regime,) = got.lane(RUN_PROCESS, REGIME_LANE)
    assert regime.name.startswith("regime: ") and regime.args["regime"]
    assert (regime.start, regime.end) == (140 * US, 200 * US)


def test_bucket_lane_is_the_partition(tmp_path: Path) -> None:
    """One slice per run of equal-level segments; together they tile the window exactly."""
    run = _pp_run(tmp_path)
    got = parse(_exported(run, tmp_path / "t.pftrace"))
    trace = tracekit.load(run)
    for rank, state in zip(trace.ranks, _states(trace), strict=True):
        att = state.attribution
        assert att is not None
        winner = att.partition.winner
        runs = 1 + int(np.count_nonzero(np.diff(winner)))
        lane = got.lane(rank.id.label, BUCKET_LANE)
        assert len(lane) == runs
        assert sum(s.end - s.start for s in lane) == att.window_ns
        assert all(a.end == b.start for a, b in itertools.pairwise(lane))


def _exported(source: Path, out: Path, fmt: str = "perfetto") -> Path:
    export(source, out, fmt)  # type: ignore[arg-type]
    return out


def test_graph_launch_fans_out_and_children_nest(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path / "graph.json.gz",
        [
            cpu_op("vllm::step", 0, 100),
            cpu_op("aten::copy_", 90, 20),  # overruns its parent by 10 µs: clamped to nest
            runtime("hipGraphLaunch", 10, 5, corr=9),
            *(kernel(f"k{i}", 20 + 10 * i, 5, stream=3, corr=9) for i in range(3)),
        ],
    )
    got = parse(_exported(path, tmp_path / "g.pftrace"))
    lane = got.lane("rank 0", "thread 101")
    assert [(s.name, s.start // US, s.end // US) for s in lane] == [
        ("vllm::step", 0, 100),
        ("hipGraphLaunch", 10, 15),
        ("aten::copy_", 90, 100),
    ]
    kernels = got.lane("rank 0", "stream 3")
    assert [k.name for k in kernels] == ["k0", "k1", "k2"]
    assert lane[1].flows_out == [f for k in kernels for f in k.flows_in]
    assert len(set(lane[1].flows_out)) == 3


def test_cpu_pipeline_shm_flows_in_order(tmp_path: Path) -> None:
    send, recv = "_C::shm_send_tensor_list", "_C::shm_recv_tensor_list"
    stage0 = [cpu_op(send, 100 * i, 10) for i in range(1, 4)] + [cpu_op(send, 101, 2)]
    stage1 = [cpu_op(recv, 0, 50)] + [cpu_op(recv, 100 * i + 5, 20) for i in range(1, 4)]
    for pp, events in enumerate((stage0, stage1)):
        write_trace(tmp_path / "run" / f"dp0_pp{pp}_tp0_rank{pp}.pt.trace.json.gz", events)
    out = tmp_path / "cpu.pftrace"
    summary = export(tmp_path / "run", out)
    assert summary.flows == {"launch": 0, "pp": 3}  # nested repeat once; early recv unpaired
    got = parse(out)
    sends = got.lane("rank 0 (dp0 pp0 tp0)", "thread 101")
    recvs = got.lane("rank 1 (dp0 pp1 tp0)", "thread 101")
    pairs = [
        (s.start // US, r.start // US)
        for s in sends
        for r in recvs
        if set(s.flows_out) & set(r.flows_in)
    ]
    assert pairs == [(100, 105), (200, 205), (300, 305)]


def test_json_format_has_the_same_content(tmp_path: Path) -> None:
    run = _pp_run(tmp_path)
    got = parse(_exported(run, tmp_path / "t.pftrace"))
    doc = orjson.loads(_exported(run, tmp_path / "t.json", "json").read_bytes())
    assert doc["otherData"]["exporter"].startswith("tracekit")
    events = doc["traceEvents"]
    by_phase = Counter(e["ph"] for e in events)
    assert by_phase["X"] == sum(len(v) for v in got.slices.values())
    assert by_phase["C"] == sum(len(v) for v in got.counters.values()) == 9
    assert by_phase["s"] == by_phase["f"] == 5
    begins = {e["id"]: e["ts"] for e in events if e["ph"] == "s"}
    assert all(begins[e["id"]] <= e["ts"] for e in events if e["ph"] == "f")
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    procs = [e["args"]["name"] for e in events if e["name"] == "process_name"]
    assert procs == got.processes()
    per_track = Counter(names[(e["pid"], e["tid"])] for e in events if e["ph"] == "X")
    assert per_track[BUCKET_LANE] == 2 + 1 and per_track["stream 20"] == 2  # common window
    origin = doc["otherData"]["origin_ns"]
    gemm = next(e for e in events if e["ph"] == "X" and e["name"] == GEMM)
    assert (origin + round(gemm["ts"] * 1000), gemm["dur"]) == (20 * US, 100.0)


def _states(trace: Trace) -> list[RankState]:
    """Each rank's stages run here, over what the driver settles for the run."""
    run = settle_loaded(trace)
    states = []
    for rank, settled in zip(trace.ranks, run.files, strict=True):
        assert settled is not None
        state = RankState(rank, trace.names, facts=settled.facts, window=settled.window)
        states.append(run_stages(state))
    return states


def _lane_runs(state: RankState) -> int:
    """Bucket-lane slices: stretches of one partition level and one final bucket."""
    att = state.attribution
    assert att is not None
    change = (np.diff(att.partition.winner) != 0) | (np.diff(att.segment_bucket) != 0)
    return 1 + int(np.count_nonzero(change))


@pytest.mark.parametrize("fmt", ["perfetto", "json"])
def test_real_sample_structure(tmp_path: Path, fmt: str) -> None:
    trace = tracekit.load(SAMPLE_TP2)
    out = tmp_path / ("s.json" if fmt == "json" else "s.pftrace")
    summary = export(trace, out, fmt)  # type: ignore[arg-type]
    assert summary.ranks == 2 and summary.flows == {"launch": 0, "pp": 0}
    states = _states(trace)  # the stages, settled as the driver settles them
    runs = [_lane_runs(s) for s in states]
    events = sum(len(r.events) for r in trace.ranks)
    steps = sum(len(s.steps or ()) for s in states)
    assert summary.slices == events + sum(runs) + steps + 1  # + the regime
    if fmt == "json":
        doc = orjson.loads(out.read_bytes())
        assert sum(e["ph"] == "X" for e in doc["traceEvents"]) == summary.slices
        return
    got = parse(out)
    labels = [r.id.label for r in trace.ranks]
    assert got.processes() == [*labels, RUN_PROCESS]
    window = rundir.read_manifest(SAMPLE_TP2).capture["steps"]
    for label, n_runs, state in zip(labels, runs, states, strict=True):
        assert len(got.lane(label, BUCKET_LANE)) == n_runs
        assert len(got.lane(label, STEP_LANE)) == len(state.steps or ()) == window
        assert {s.name for s in got.lane(label, STEP_LANE)} <= {"prefill", "decode", "mixed"}
        host = [t for u, t in got.names.items() if got.kinds[u] == "thread"]
        assert host


@pytest.mark.shared_traces
def test_real_gpu_traces_flows(tmp_path: Path) -> None:
    out = tmp_path / "hta.pftrace"
    summary = export(shared("hta_2rank"), out)
    got = parse(out)
    assert len(got.processes()) == 3
    out_ids, in_ids = got.flows()
    assert len(out_ids) == summary.flows["launch"] > 1000 and out_ids == in_ids
    graph = shared("vllm_mi300x_decode_cudagraph/graph_execution.json.gz")
    analysis = tracekit.analyze(graph)
    got = parse(_exported(graph, tmp_path / "graph.pftrace"))
    fan_out = max(len(s.flows_out) for lane in got.slices.values() for s in lane)
    assert fan_out > 1 and fan_out <= analysis.ranks[0].graph_kernels


def test_trace_processor_reads_the_export(tmp_path: Path) -> None:
    binary = os.environ.get("TRACEKIT_TRACE_PROCESSOR")
    if not binary:
        pytest.skip("TRACEKIT_TRACE_PROCESSOR is not set: no trace_processor binary to load with")
    from perfetto.trace_processor import TraceProcessor, TraceProcessorConfig

    out = _exported(_pp_run(tmp_path), tmp_path / "tp.pftrace")
    tp = TraceProcessor(trace=str(out), config=TraceProcessorConfig(bin_path=binary))
    try:
        rows = tp.query(
            "select t.name as track, count(*) as n from slice s join track t on s.track_id = t.id "
            "group by t.name"
        ).as_pandas_dataframe()
        counts = dict(zip(rows["track"], rows["n"], strict=True))
        assert counts[BUCKET_LANE] == 3 + 5 and counts["stream 20"] == 2
        flows = tp.query("select count(*) as n from flow").as_pandas_dataframe()
        assert int(flows["n"][0]) == 5
        procs = tp.query("select name from process where name like 'rank %'").as_pandas_dataframe()
        assert sorted(procs["name"]) == ["rank 0 (pp0)", "rank 1 (pp1)"]
    finally:
        tp.close()


def test_cli_export_and_bad_input(tmp_path: Path) -> None:
    run = _pp_run(tmp_path)
    runner = CliRunner()
    result = runner.invoke(export_command, [str(run), "-o", str(tmp_path / "x.json")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.json").read_bytes().startswith(b'{"otherData":{"exporter":"tracekit')
    result = runner.invoke(export_command, [str(tmp_path / "missing"), "-o", str(tmp_path / "y")])
    assert result.exit_code == 2
    assert "no such file" in result.output and not (tmp_path / "y").exists()
