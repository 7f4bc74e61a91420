"""Load a user's PATH into a Trace: discover files, parse each rank, settle identities."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from analyzers.engine.process_pool import Progress, parse_all
from analyzers.read.discover import Discovered, TraceFile, discover
from analyzers.read.kineto import ParsedTrace
from analyzers.read.kineto_values import as_int
from tracekit.core import gpu_identify
from tracekit.core.errors import TracekitError
from tracekit.core.trace_model import DEVICE_KINDS, NameTable, RankId, RankTrace, Trace

log = logging.getLogger(__name__)

_ID_FIELDS = ("rank", "dp", "pp", "tp", "ep")


def load(path: str | Path, progress: Progress | None = None, jobs: int | None = None) -> Trace:
    """Parse every rank under ``path``. One unreadable rank among several is a warning.

    ``jobs``: processes parsing files at once (None: one per core, at most one per file;
    1: in this process). The result is the same whatever it is: merged in file order."""
    found = discover(Path(path))
    names = NameTable()
    ranks: list[RankTrace] = []
    failures: list[TracekitError] = []
    outcomes = parse_all([f.path for f in found.files], jobs, progress)
    for file, parsed in zip(found.files, outcomes, strict=True):
        if isinstance(parsed, TracekitError):
            log.warning("%s", parsed)
            failures.append(parsed)
            continue
        # An nsys export holds one rank per active (device, process) pair: the file name
        # names a rank only when the export holds just one.
        ranks += [rank_trace(file, p, names, alone=len(parsed) == 1) for p in parsed]
    if not ranks:
        raise failures[0]
    ranks = _settle_identities(ranks)
    warnings = list(found.notes)
    warnings += [f"rank trace unreadable, analysed without it: {exc}" for exc in failures]
    warnings += missing_ranks([r.id for r in ranks])
    manifest = msgspec.to_builtins(found.manifest) if found.manifest else None
    return Trace(
        str(found.source),
        tuple(ranks),
        names,
        tuple(warnings),
        manifest,
        run_dir=str(found.run_dir) if found.run_dir else None,
    )


def rank_trace(
    file: TraceFile, parsed: ParsedTrace, names: NameTable, alone: bool = True
) -> RankTrace:
    """One parsed rank: names interned into ``names``, its identity from what the file
    says (``alone``: the file holds just this rank, so its name may name it)."""
    mapping = names.intern_all(parsed.names)
    events = parsed.events.remap_names(mapping)
    device_rows = np.isin(events.kind, DEVICE_KINDS)
    devices = tuple(int(d) for d in np.unique(events.device[device_rows]) if d >= 0)
    props = devices_properties(devices, parsed.device_properties)
    device_names = tuple(str(p.get("name", "")) for p in props)
    device_keys = tuple(gpu_identify.device_key(p) for p in props)
    identity = _identity(file, parsed.distributed_info) if alone else RankId(source="none")
    nsys = parsed.metadata.get("nsys")
    if isinstance(nsys, dict):  # named from the export: process, CUDA device, GPU
        source = f"nsys export: {nsys.get('label')}"
        joined = source if identity.source == "none" else f"{identity.source}+{source}"
        identity = msgspec.structs.replace(identity, source=joined)
    return RankTrace(
        id=identity,
        path=str(file.path),
        events=events,
        clock=parsed.clock,
        devices=devices,
        device_names=device_names,
        device_keys=device_keys,
        metadata={
            **parsed.metadata,
            "distributedInfo": _small_dist_info(parsed),
            # memory, bandwidth, SM count, ... of this rank's devices, for hardware specs
            "deviceProperties": props,
        },
        ignored=parsed.ignored,
    )


_PART = ("name", "computeMajor", "computeMinor", "numSms", "totalGlobalMem")


def devices_properties(devices: Sequence[int], entries: Sequence[Any]) -> list[dict[str, Any]]:
    """The ``deviceProperties`` entry of each of the rank's devices, in device order.

    A device no entry has the id of (a process that sees its GPUs renumbered: SGLang's
    MI300X trace lists device 0 and runs its kernels on device 9) takes the entry its
    process lists when every listed entry is the same part: it ran on one of them."""
    props = {as_int(p.get("id")): p for p in entries if isinstance(p, dict)}
    parts = {tuple(str(p.get(k)) for k in _PART) for p in props.values()}
    shared = next(iter(props.values())) if len(parts) == 1 else None
    return [p for p in (props.get(d, shared) for d in devices) if p is not None]


def _small_dist_info(parsed: ParsedTrace) -> dict[str, Any]:
    info = parsed.distributed_info or {}
    return {k: info[k] for k in ("backend", "rank", "world_size") if k in info}


def _identity(file: TraceFile, dist: dict[str, Any] | None) -> RankId:
    """distributedInfo first, then the file name, then the manifest, field by field."""
    values: dict[str, int | None] = dict.fromkeys(_ID_FIELDS)
    sources: list[str] = []
    dist = dist or {}
    rank, world = (as_int(dist.get(k)) for k in ("rank", "world_size"))  # "3" is 3, too
    if rank is not None and rank >= 0:
        values["rank"] = rank
        sources.append("distributedInfo")
    for label, fields in (("file name", file.name_fields), ("manifest", file.manifest_fields)):
        used = False
        for key in _ID_FIELDS:
            if values[key] is None and key in fields:
                values[key] = fields[key]
                used = True
        if used:
            sources.append(label)
    world = world if world is not None and world > 0 else None
    return RankId(world_size=world, source="+".join(sources) or "none", **values)


def _settle_identities(ranks: list[RankTrace]) -> list[RankTrace]:
    ids, order = settle_identities([(r.id, r.path) for r in ranks])
    return [replace(ranks[i], id=ids[i]) for i in order]


def settle_identities(ranks: Sequence[tuple[RankId, str]]) -> tuple[list[RankId], list[int]]:
    """Each rank's final identity, and the rank order (dp, pp, tp, ep, rank).

    Ranks without any identity are numbered in file order; duplicates are an error."""
    ids = [identity for identity, _ in ranks]
    anonymous = [i for i, r in enumerate(ids) if all(v is None for v in r.key)]
    if anonymous:
        taken = {r.rank for r in ids if r.rank is not None}
        free = (n for n in range(len(ids) * 2 + 1) if n not in taken)
        for i in anonymous:
            source = ids[i].source
            ids[i] = msgspec.structs.replace(
                ids[i],
                rank=next(free),
                source="file order" if source == "none" else f"file order, {source}",
            )
    seen: dict[tuple[int | None, ...], int] = {}
    for i, identity in enumerate(ids):
        other = seen.setdefault(identity.key, i)
        if other != i:
            raise TracekitError(
                ranks[i][1], f"duplicate rank identity {identity.label} (also {ranks[other][1]})"
            )
    order = sorted(
        range(len(ids)),
        key=lambda i: tuple(
            -1 if v is None else v
            for v in (ids[i].dp, ids[i].pp, ids[i].tp, ids[i].ep, ids[i].rank)
        ),
    )
    return ids, order


def missing_ranks(ids: Sequence[RankId]) -> list[str]:
    """A warning when the ranks' world size says more ranks ran than are here."""
    worlds = {r.world_size for r in ids if r.world_size}
    if len(worlds) == 1:
        world = worlds.pop()
        if world is not None and len(ids) < world:
            return [
                f"traces for {len(ids)} of {world} ranks (world_size {world}); "
                "the others are missing"
            ]
    return []


__all__ = ["Discovered", "Progress", "load"]
