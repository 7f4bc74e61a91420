"""The cluster engine: each rank's analysis as a Ray task, next to its trace.

``tracekit analyze --ray [ADDRESS] PATH`` (the optional extra ``tracekit[ray]``):

1. **where the traces are**: a listing task runs on every alive node, pinned there, and
   discovers PATH on that node's disks (the run directory's manifest and ``steps/`` are
   read where they are). A file every node lists the same (size, mtime) sits on a shared
   file system and may run anywhere; a file only some nodes list is node-local, and its
   task is pinned to the first node holding it (hard affinity: it cannot be read
   elsewhere). Rank identities from the manifest apply to files on any node.
2. **per file**: the driver's two rounds (``analyzers.engine.driver``), each file's tasks
   pinned to the node holding it (one CPU each): round 1 parses it and leaves the parsed
   ranks in a spill file on that node, round 2 runs the stages on them and returns only the
   ranks' digests: kilobytes, whatever the trace's size;
3. **run**: settling and the run-level stages in the driver, as for the local process
   pool, so the Analysis equals the local one (tested on a real local Ray cluster).

Without ADDRESS a local Ray instance is started for the run and stopped after it; with one
(``auto``, ``host:port``, ``ray://…``) the existing cluster is joined. Every node needs
tracekit installed (the tasks import it).
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from analyzers.engine.driver import Executor, analyze_found
from analyzers.engine.file_jobs import FileJob
from analyzers.engine.process_pool import Progress, WorkerError, _worker
from analyzers.rank.rank_stages import RANK_STAGES, Stage
from analyzers.read.discover import Discovered, TraceFile, discover, manifest_fields, missing_note
from analyzers.read.run_facts import RunFacts, manifest_facts
from tracekit.core.analysis import Analysis
from tracekit.core.errors import TracekitError
from tracekit.core.rundir import fields_from_name

log = logging.getLogger(__name__)
INSTALL_HINT = "Ray is not installed: pip install 'tracekit[ray]'"


@dataclass(frozen=True)
class Listing:
    """What one node holds under PATH."""

    node: str
    found: Discovered | None
    facts: RunFacts | None  # read where the run directory is
    stats: dict[str, tuple[int, int]]  # file path -> (size, mtime ns)
    error: str = ""
    # the manifest as plain data, made here: a Manifest struct that crossed a pickle holds
    # copies of its defaults, which msgspec (omitting defaults by identity) then writes out
    manifest: dict[str, Any] | None = None


@dataclass(frozen=True)
class Placement:
    """The merged discovery, and for each file the node it must run on (None: anywhere)."""

    found: Discovered
    facts: RunFacts | None
    manifest: dict[str, Any] | None
    nodes: tuple[str | None, ...]


def list_node(path: str, node: str) -> Listing:
    """Discover PATH on this node (run as a task pinned to ``node``)."""
    try:
        found = discover(Path(path))
    except TracekitError as exc:
        return Listing(node, None, None, {}, exc.cause)
    stats = {}
    for f in found.files:
        st = f.path.stat()
        stats[str(f.path)] = (st.st_size, st.st_mtime_ns)
    manifest = msgspec.to_builtins(found.manifest) if found.manifest else None
    facts = None
    if found.run_dir is not None:
        facts = manifest_facts(str(found.run_dir), manifest)
    return Listing(node, found, facts, stats, manifest=manifest)


def place(path: str, listings: Sequence[Listing]) -> Placement:
    """Merge the nodes' listings: one file list, the manifest's identities applied to all,
    each file pinned to its node unless every node lists it the same."""
    holding = [ls for ls in listings if ls.found is not None]
    if not holding:
        causes = sorted({ls.error for ls in listings})
        raise TracekitError(
            path, f"not readable on any of the {len(listings)} Ray node(s): {'; '.join(causes)}"
        )
    head = next((ls for ls in holding if ls.found and ls.found.manifest), holding[0])
    assert head.found is not None
    fields = manifest_fields(head.found.manifest) if head.found.manifest else {}
    seen: dict[tuple[str, tuple[int, int]], list[str]] = {}
    for ls in holding:
        for name, stat in ls.stats.items():
            seen.setdefault((name, stat), []).append(ls.node)
    everyone = len(listings)
    files, nodes = [], []
    for (name, _), holders in seen.items():
        p = Path(name)
        files.append(TraceFile(p, fields_from_name(p.name), fields.get(p.name, {})))
        nodes.append(None if len(holders) == everyone else holders[0])
    present = {f.path.name for f in files}
    notes = tuple(n for n in head.found.notes if not any(n == missing_note(x) for x in present))
    order = sorted(range(len(files)), key=lambda i: str(files[i].path))
    found = Discovered(
        head.found.source,
        tuple(files[i] for i in order),
        head.found.manifest,
        notes,
        head.found.run_dir,
    )
    return Placement(found, head.facts, head.manifest, tuple(nodes[i] for i in order))


def import_ray(path: str | Path) -> ModuleType:
    try:
        import ray
    except ImportError:
        raise TracekitError(path, INSTALL_HINT) from None
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A ``host:port`` or ``ray://host:port`` address must accept a connection: Ray itself
    retries an unreachable one for minutes before it gives up."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]]+?)\]?:(\d+)", address)
    if match is None:
        return  # "auto" and the like: Ray resolves them and fails fast
    try:
        socket.create_connection((match[1], int(match[2])), timeout=timeout_s).close()
    except OSError as exc:
        raise TracekitError(address, f"cannot reach the Ray cluster: {exc}") from None


def analyze_ray(
    path: str | Path,
    address: str | None = None,
    progress: Progress | None = None,
    stages: Sequence[Stage] = RANK_STAGES,
    whole_window: bool = False,
) -> Analysis:
    """Analyse PATH with one Ray task per trace file (``address``: None starts a local Ray);
    over the steady window, or the whole one with ``whole_window`` (as ``driver.analyze``)."""
    ray = import_ray(path)
    started = not ray.is_initialized()
    if started and address:
        check_reachable(address)
    if started:
        try:
            ray.init(
                address=address or None,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or "a local Ray instance"
            raise TracekitError(where, f"cannot start or join Ray: {exc}") from None
    try:
        placement = _discover(ray, str(path))
        execute = _executor(ray, placement)
        analysis, _ = analyze_found(
            placement.found,
            execute,
            progress,
            stages,
            facts=placement.facts,
            manifest=placement.manifest,
            whole_window=whole_window,
        )
        return analysis
    finally:
        if started:
            ray.shutdown()


def _discover(ray: Any, path: str) -> Placement:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    nodes = sorted((n["NodeID"] for n in ray.nodes() if n["Alive"]), key=lambda n: n != here)
    task = ray.remote(num_cpus=0)(list_node)
    refs = [
        task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
            path, node
        )
        for node in nodes
    ]
    return place(path, ray.get(refs))


def _executor(ray: Any, placement: Placement) -> Executor:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_of = {str(f.path): n for f, n in zip(placement.found.files, placement.nodes, strict=True)}
    task = ray.remote(num_cpus=1, max_retries=0)(_worker)

    def run(
        fn: Callable[[FileJob], Any], jobs: Sequence[FileJob], progress: Progress | None
    ) -> list[Any]:
        refs = []
        for job in jobs:
            node = node_of.get(str(job.file.path))
            strategy = (
                "DEFAULT" if node is None else NodeAffinitySchedulingStrategy(node, soft=False)
            )
            refs.append(task.options(scheduling_strategy=strategy).remote(fn, job))
        index = {ref: i for i, ref in enumerate(refs)}
        out: list[Any] = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = index[ref]
                result = ray.get(ref)
                out[i] = result.rebuilt() if isinstance(result, WorkerError) else result
                if progress:
                    progress(len(refs) - len(pending), len(refs), jobs[i].file.path.name)
        return [o for o in out if o is not None]

    return run
