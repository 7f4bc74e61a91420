"""The KV-cache reads lines of the report: what decode attention read, by context."""

from __future__ import annotations

from tracekit.core.kv_reads import KvReads


def kv_read_lines(reads: KvReads) -> list[str]:
    """What decode attention read from the KV cache, and how it grew with context."""
    growth = ", ".join(
        f"{b.context_per_request:,.0f} tok → {b.bytes_per_step / 1e6:,.2f} MB/step "
        f"at {b.bandwidth / 1e9:,.2f} GB/s"
        for b in reads.by_context
    )
    return [
        f"decode attention read {reads.bytes_read / 1e9:,.3f} GB per rank over {reads.steps} "
        f"step(s), {reads.bandwidth / 1e9:,.2f} GB/s on average (the scheduler's context "
        f"counts × {reads.bytes_per_token:,} B per token)",
        f"by context per request: {growth}",
    ]
