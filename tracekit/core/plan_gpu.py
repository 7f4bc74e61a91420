"""A GPU as ``tracekit plan`` sees it: the roofline's ``DeviceSpec`` (dense BF16 peak, HBM,
link) plus dense FLOP/s per precision, the GPUs one node's fast link joins, and the links'
latencies; from the spec table or from a ``--gpu-spec`` JSON file.

The file (every figure per GPU; bandwidths per direction)::

    {"name": "H100 SXM",
     "flops": {"bf16": 989e12, "fp16": 989e12, "fp8": 1979e12, "int8": 1979e12},
     "hbm_bandwidth": 3.35e12, "hbm_bytes": 80e9,
     "link_bandwidth": 450e9, "link_latency": 20e-6,
     "gpus_per_node": 8, "internode_bandwidth": 50e9, "internode_latency": 50e-6}

``name``, ``flops`` (with ``bf16`` or ``fp16``), ``hbm_bandwidth`` and ``hbm_bytes`` are
required; a precision left out of ``flops`` is not native (its GEMMs run weight-only at the
16-bit rate); a latency left out keeps the planner's default (``Costs``).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from tracekit.core.errors import TracekitError
from tracekit.core.hardware import DeviceSpec, precision_peaks
from tracekit.core.precision import PRECISIONS


class PlanGpu(msgspec.Struct, frozen=True, kw_only=True):
    spec: DeviceSpec
    flops: dict[str, float]  # dense FLOP/s per precision its tensor cores run natively
    gpus_per_node: int = 8
    link_latency: float | None = None  # None: Costs.allreduce_latency
    internode_bandwidth: float | None = None  # None: Costs.internode_bandwidth
    internode_latency: float | None = None  # None: Costs.internode_latency


class _File(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    flops: dict[str, float]
    hbm_bandwidth: float
    hbm_bytes: float
    link_bandwidth: float | None = None
    link_latency: float | None = None
    gpus_per_node: int = 8
    internode_bandwidth: float | None = None
    internode_latency: float | None = None
    source: str = ""


def builtin(spec: DeviceSpec) -> PlanGpu:
    """A spec-table device with its precisions and node size; another (a CPU, a device the
    table lacks) with its one peak as bf16."""
    found = precision_peaks(spec.name)
    if found is None:
        return PlanGpu(spec=spec, flops={"bf16": spec.flops, "fp16": spec.flops})
    peaks, node = found
    return PlanGpu(spec=spec, flops=peaks, gpus_per_node=node)


def load(path: str | Path) -> PlanGpu:
    """A ``--gpu-spec`` file (module docstring); bad input is one TracekitError naming it."""
    try:
        f = msgspec.json.decode(Path(path).read_bytes(), type=_File)
    except OSError as exc:
        raise TracekitError(path, f"unreadable GPU spec ({exc.strerror or exc})") from None
    except msgspec.ValidationError as exc:
        raise TracekitError(path, f"bad GPU spec: {exc}") from None
    except msgspec.DecodeError as exc:
        raise TracekitError(path, f"GPU spec is not JSON ({exc})") from None
    bad = sorted(set(f.flops) - set(PRECISIONS))
    if bad:
        raise TracekitError(path, f"bad GPU spec: unknown precision {', '.join(bad)} in flops "
                            f"(known: {', '.join(PRECISIONS)})")  # fmt: skip
    base = f.flops.get("bf16") or f.flops.get("fp16")
    figures = [*f.flops.values(), f.hbm_bandwidth, f.hbm_bytes, f.gpus_per_node]
    figures += [x for x in (f.link_bandwidth, f.internode_bandwidth) if x is not None]
    if not base or min(figures) <= 0:
        raise TracekitError(path, "bad GPU spec: flops needs bf16 or fp16, and every figure "
                            "must be positive")  # fmt: skip
    spec = DeviceSpec(
        name=f.name,
        flops=base,
        bandwidth=f.hbm_bandwidth,
        memory_bytes=f.hbm_bytes,
        interconnect=f.link_bandwidth,
        source=f"GPU spec file {path}" + (f": {f.source}" if f.source else ""),
    )
    return PlanGpu(
        spec=spec,
        flops=dict(f.flops),
        gpus_per_node=f.gpus_per_node,
        link_latency=f.link_latency,
        internode_bandwidth=f.internode_bandwidth,
        internode_latency=f.internode_latency,
    )
