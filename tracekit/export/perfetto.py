"""Native Perfetto (``.pftrace``) sink, built with the ``perfetto`` package's trace builder.

Packets go into a ``TraceProtoBuilder``; every ``BATCH`` packets the builder's ``Trace`` is
serialised, appended to the file and replaced by a fresh one. Concatenated ``Trace`` messages
parse as one trace (repeated fields merge), so memory stays bounded by one batch however
large the run.

Encoding: one trusted packet sequence; event names and categories are interned (the first
packet clears incremental state, every event packet needs it); slices are ``SLICE_BEGIN`` /
``SLICE_END`` pairs emitted in nesting order on their track; arguments are debug annotations;
flows use ``flow_ids`` on the source slice's begin and ``terminating_flow_ids`` on the target
slice's begin, or its end where the target began first (trace processor binds flow ids on
either event to that slice, in time order);
counters are ``COUNTER`` events with ``double_counter_value``. Timestamps are absolute ns
(shifted up only if the run has negative timestamps, which Perfetto cannot hold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import IO, Any

from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import (
    TracePacket,
    TrackDescriptor,
    TrackEvent,
)
from perfetto.trace_builder.proto_builder import TraceProtoBuilder

from tracekit.export.timeline import Arg, Counter, Slices, Track, begin_end

BATCH = 20_000
SEQUENCE = 1
_BEGIN = TrackEvent.TYPE_SLICE_BEGIN
_END = TrackEvent.TYPE_SLICE_END
_COUNTER = TrackEvent.TYPE_COUNTER
_CLEARED = TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
_NEEDS = TracePacket.SEQ_NEEDS_INCREMENTAL_STATE


class PerfettoSink:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.builder = TraceProtoBuilder()
        self.pending = 0
        self.started = False
        self.shift = 0
        self.names: dict[str, int] = {}
        self.categories: dict[str, int] = {}
        self.tracks = 0
        self.slice_count = 0
        self.counter_values = 0

    # --- the Sink protocol -------------------------------------------------------------------
    def begin(self, origin_ns: int) -> None:
        self.shift = -origin_ns if origin_ns < 0 else 0

    def track(self, track: Track) -> None:
        self.tracks += 1
        desc = self._packet().track_descriptor
        desc.uuid = track.uuid
        if track.parent is not None and track.kind != "thread":  # threads join by pid
            desc.parent_uuid = track.parent
        desc.sibling_order_rank = track.order
        if track.kind == "process":
            desc.process.pid = track.pid
            desc.process.process_name = track.name
            desc.child_ordering = TrackDescriptor.EXPLICIT
        elif track.kind == "thread":
            desc.thread.pid = track.pid
            desc.thread.tid = track.tid
            desc.thread.thread_name = track.name
        else:
            desc.name = track.name
            if track.kind == "counter":
                desc.counter.unit_name = track.unit

    def slices(self, batch: Slices) -> None:
        uuid, shift = batch.track.uuid, self.shift
        starts, ends = batch.start.tolist(), batch.end.tolist()
        name_iids = self._intern(batch.names, self.names, "event_names")
        cats = batch.categories
        one_cat = isinstance(cats, str)
        cat_list = [cats] if isinstance(cats, str) else cats
        cat_iids = self._intern(cat_list, self.categories, "event_categories")
        args, flows_out, flows_in = batch.args, batch.flows_out, batch.flows_in
        flows_in_end = batch.flows_in_end
        for ts, i in begin_end(starts, ends):
            if self.pending >= BATCH:
                self._flush()
            self.pending += 1
            event = self.builder.add_packet()
            event.timestamp = ts + shift
            event.trusted_packet_sequence_id = SEQUENCE
            event.sequence_flags = _NEEDS
            te = event.track_event
            te.track_uuid = uuid
            if i < 0:
                te.type = _END
                if ~i in flows_in_end:
                    te.terminating_flow_ids.extend(flows_in_end[~i])
                continue
            te.type = _BEGIN
            te.name_iid = name_iids[i]
            te.category_iids.append(cat_iids[0] if one_cat else cat_iids[i])
            if args is not None and args[i]:
                _annotate(te, args[i])  # type: ignore[arg-type]
            if i in flows_out:
                te.flow_ids.extend(flows_out[i])
            if i in flows_in:
                te.terminating_flow_ids.extend(flows_in[i])
        self.slice_count += len(starts)

    def counter(self, series: Counter) -> None:
        uuid = series.track.uuid
        for ts, value in zip(series.ts.tolist(), series.values.tolist(), strict=True):
            packet = self._packet()
            packet.timestamp = ts + self.shift
            packet.sequence_flags |= _NEEDS
            event = packet.track_event
            event.type = _COUNTER
            event.track_uuid = uuid
            event.double_counter_value = value
        self.counter_values += len(series.ts)

    def close(self) -> None:
        self._flush()

    # --- helpers -------------------------------------------------------------------------------
    def _packet(self) -> TracePacket:
        if self.pending >= BATCH:
            self._flush()
        packet: TracePacket = self.builder.add_packet()
        packet.trusted_packet_sequence_id = SEQUENCE
        if not self.started:  # the sequence's first packet (a track) starts its incremental state
            packet.sequence_flags = _CLEARED
            self.started = True
        self.pending += 1
        return packet

    def _flush(self) -> None:
        if self.pending:
            self.out.write(self.builder.serialize())
            self.builder = TraceProtoBuilder()
            self.pending = 0

    def _intern(self, texts: Sequence[str], table: dict[str, int], field: str) -> list[int]:
        """Interned ids of ``texts``; new ones are declared in one packet before their use."""
        new = [t for t in dict.fromkeys(texts) if t not in table]
        if new:
            packet = self._packet()
            packet.sequence_flags |= _NEEDS
            entries = getattr(packet.interned_data, field)
            for text in new:
                table[text] = iid = len(table) + 1
                entries.add(iid=iid, name=text)
        return [table[t] for t in texts]


def _annotate(event: Any, args: Mapping[str, Arg]) -> None:
    for key, value in args.items():
        note = event.debug_annotations.add()
        note.name = key
        if isinstance(value, int):
            note.int_value = int(value)
        elif isinstance(value, float):
            note.double_value = value
        else:
            note.string_value = str(value)
