"""The KV-cache reads of decode attention, counted from the scheduler (part of ``KvReport``)."""

from __future__ import annotations

import msgspec


class KvReadBin(msgspec.Struct, frozen=True, kw_only=True):
    """Decode steps of one context range: their mean KV read per step and its bandwidth."""

    context_per_request: float  # mean tokens a decoding request attends over
    bytes_per_step: float  # per rank
    bandwidth: float  # bytes/s per rank: the bin's bytes over its steps' time
    steps: int


class KvReads(msgspec.Struct, frozen=True, kw_only=True):
    """KV-cache bytes decode attention reads, counted from the scheduler (steps/
    ``decode_context`` × KV bytes per token), per rank; flagged steps left out."""

    steps: int  # decode steps counted
    bytes_per_token: int  # per rank
    bytes_read: int  # per rank, over those steps
    bandwidth: float  # bytes/s per rank over those steps' time
    by_context: list[KvReadBin]  # ascending context per request
