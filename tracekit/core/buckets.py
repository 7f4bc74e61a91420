"""The attribution buckets of DESIGN.md and the priority that resolves overlap.

Every rank's analysed window is partitioned into these buckets. Where several kinds of
activity overlap in time (kernels on several streams, communication under compute, several
CPU threads), the bucket earliest in ``PRIORITY`` wins that stretch of time: communication
is only *exposed* where no compute/memory/routing work hides it.
"""

from __future__ import annotations

from typing import Final

COMPUTE: Final = "compute"
HBM: Final = "hbm"
COLLECTIVE: Final = "collective"
BUBBLE: Final = "bubble"
MOE_ROUTING: Final = "moe_routing"
KV_STALL: Final = "kv_stall"
HOST: Final = "host"
IDLE: Final = "idle"

#: The DESIGN.md buckets, in report order.
BUCKETS: Final[tuple[str, ...]] = (
    COMPUTE,
    HBM,
    COLLECTIVE,
    BUBBLE,
    MOE_ROUTING,
    KV_STALL,
    HOST,
    IDLE,
)

#: Overlap resolution: when activity of several buckets is live at once, the first wins.
#: Work that makes progress (compute, memory traffic, routing) hides communication; exposed
#: collectives hide pipeline waits. Host and idle only fill time where the device does nothing.
PRIORITY: Final[tuple[str, ...]] = (
    COMPUTE,
    HBM,
    MOE_ROUTING,
    COLLECTIVE,
    BUBBLE,
    KV_STALL,
    HOST,
    IDLE,
)

DESCRIPTIONS: Final[dict[str, str]] = {
    COMPUTE: "kernel / op time that is compute-bound",
    HBM: "kernel / op time that is memory-bandwidth-bound (HBM traffic)",
    COLLECTIVE: "exposed all-reduce / all-gather / reduce-scatter / all-to-all",
    BUBBLE: "pipeline stage waiting on point-to-point send/recv",
    MOE_ROUTING: "MoE gating, top-k, permute/unpermute, EP dispatch/combine",
    KV_STALL: "time lost to KV-cache capacity",
    HOST: "device idle while the host is busy (launch / scheduling / Python)",
    IDLE: "everything else",
}

#: How a bucket reads in a finding ("TP=2 spends 18% in exposed collectives (interconnect)").
BUCKET_PHRASE: Final[dict[str, str]] = {
    "compute": "compute-bound kernels",
    "hbm": "HBM-bound kernels",
    "collective": "exposed collectives (interconnect)",
    "bubble": "pipeline bubbles",
    "moe_routing": "MoE routing",
    "kv_stall": "KV-cache stalls",
    "host": "host overhead (launch / scheduling)",
    "idle": "idle time",
}
