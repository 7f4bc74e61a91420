"""Which peaks a roofline uses, and what a figure above them means.

* a run directory analyses the same on any machine: the bundled samples give byte-identical
  ``--json`` under two different local ``tracekit hw`` caches, and a sample given recorded
  peaks (as capture now writes them) is analysed with those and names their source;
* the rule of ``analyzers.read.run_facts.device_spec`` for bare traces, failed probes and GPUs;
* a roofline figure above the peak makes it suspect: the report says so with the worst
  ratio, compute- vs HBM-bound is not assessed, the other regimes are;
* calibration refuses a fitted kernel efficiency above 1.
"""

from __future__ import annotations

from pathlib import Path

import click
import msgspec
import pytest
from click.testing import CliRunner

from analyzers.engine.driver import analyze
from analyzers.planning.calibration import calibrate
from analyzers.read.run_facts import BARE_CPU, NOT_RECORDED, device_spec
from tests.conftest import REPO, SAMPLE_TP2
from tests.peak_records import XEON_AVX512_RUN1, cpu_probe, recorded, with_peaks
from tracekit.cli import main
from tracekit.cli_plan import plan_command
from tracekit.core import cpu_probe as probe_mod
from tracekit.core.analysis import from_json
from tracekit.core.cpu_probe import RecordedPeaks
from tracekit.core.errors import TracekitError
from tracekit.render.console import render

SAMPLES = sorted(p for p in (REPO / "sample_traces").iterdir() if (p / "manifest.json").is_file())
#: the peaks the calibration tests use: the figures of the samples' capture machine
EPYC = cpu_probe(317.3e9, 34.2e9, cpu_model="AMD EPYC")
SLOW = cpu_probe(0.05e9, 0.05e9, cpu_model="AMD EPYC")  # far below what the samples ran at


def _json(path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    monkeypatch.setenv("TRACEKIT_HW_CACHE", str(cache))
    result = CliRunner().invoke(main, ["analyze", "--json", "-j", "1", str(path)])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def _two_caches(tmp_path: Path) -> tuple[Path, Path]:
    """Two local probe caches with very different CPUs (what `tracekit hw` would write)."""
    fast = probe_mod.save(cpu_probe(500e9, 100e9, timings=XEON_AVX512_RUN1), tmp_path / "a.json")
    slow = probe_mod.save(cpu_probe(1e9, 2e9, cpu_model="AMD EPYC"), tmp_path / "b.json")
    return fast, slow


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_samples_ignore_the_local_probe(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = _two_caches(tmp_path)
    one = _json(sample, fast, monkeypatch)
    assert one == _json(sample, slow, monkeypatch)
    analysis = from_json(one)
    # the peaks are the ones the sample recorded at capture, named as such, never suspect
    recorded_peaks = msgspec.convert(
        msgspec.json.decode((sample / "manifest.json").read_bytes())["peaks"], RecordedPeaks
    )
    probe = recorded_peaks.cpu_probe
    assert probe is not None and analysis.hardware is not None
    assert (analysis.hardware.flops, analysis.hardware.bandwidth) == (probe.flops, probe.bandwidth)
    assert analysis.peaks is not None and analysis.peaks.origin == "capture probe"
    assert analysis.peaks.suspect is None
    # without recorded peaks (a run captured before tracekit recorded them): none, and why
    old = _json(with_peaks(sample, tmp_path / "old", None), fast, monkeypatch)
    assert old == _json(tmp_path / "old", slow, monkeypatch)
    bare = from_json(old)
    assert bare.hardware is None and bare.peaks is not None
    assert bare.peaks.origin == "none" and bare.peaks.source == NOT_RECORDED
    assert any(NOT_RECORDED in w for w in bare.warnings)


def test_recorded_peaks_are_used_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = with_peaks(SAMPLE_TP2, tmp_path / "vllm_cpu_tp2", recorded(EPYC))
    fast, slow = _two_caches(tmp_path)
    data = _json(run, fast, monkeypatch)
    assert data == _json(run, slow, monkeypatch)
    analysis = from_json(data)
    spec = analysis.hardware
    assert spec is not None and (spec.flops, spec.bandwidth) == (317.3e9, 34.2e9)
    peaks = analysis.peaks
    assert peaks is not None and peaks.origin == "capture probe" and peaks.suspect is None
    assert peaks.source.startswith("CPU AMD EPYC: recorded at capture (manifest): CPU probe")
    assert "F.linear bfloat16" in peaks.source and "avx512f" in peaks.source
    assert all(r.roofline is not None for r in analysis.ranks)
    text = render(analysis, width=200)
    assert "Peaks (capture probe): CPU AMD EPYC: recorded at capture (manifest)" in text


def test_suspect_peak_stops_deciding_the_verdict(tmp_path: Path) -> None:
    run = with_peaks(SAMPLE_TP2, tmp_path / "vllm_cpu_tp2", recorded(SLOW))
    analysis = analyze(run, jobs=1)
    peaks = analysis.peaks
    assert peaks is not None and peaks.suspect and peaks.worst_ratio is not None
    assert peaks.worst_ratio > 1 and f"{peaks.worst_ratio:,.2f}× the peak" in peaks.suspect
    regime = analysis.regime
    for name in ("compute-bound", "hbm-bound"):
        assert name not in regime.scores and "suspect peaks" in regime.not_assessed[name]
    assert regime.name not in ("compute-bound", "hbm-bound")
    assert "interconnect-bound" in regime.scores and "host-bound" in regime.scores
    text = render(analysis, width=400)
    assert "peak suspect: roofline figures exceed the peak, worst rank" in text
    assert "not assessed: compute-bound: the compute vs HBM split rests on suspect" in text
    fine = analyze(with_peaks(SAMPLE_TP2, tmp_path / "fine", recorded(EPYC)), jobs=1)
    assert fine.peaks is not None and fine.peaks.suspect is None
    assert "compute-bound" in fine.regime.scores and "hbm-bound" in fine.regime.scores


def test_calibration_refuses_an_efficiency_above_one(tmp_path: Path) -> None:
    run = with_peaks(SAMPLE_TP2, tmp_path / "vllm_cpu_tp2", recorded(SLOW))
    with pytest.raises(TracekitError, match=r"kernel efficiency \d[\d,]*% is above 100%") as err:
        calibrate([run], jobs=1)
    assert str(run) in str(err.value) and "suspect" in str(err.value)
    group = click.Group(commands={"plan": plan_command})
    result = CliRunner().invoke(group, ["plan", "--calibrate", str(run), "-j", "1"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "kernel efficiency" in lines[0] and "vllm_cpu_tp2" in lines[0]


def test_the_rule_for_each_input() -> None:
    probe = recorded(EPYC)
    manifest = {"peaks": msgspec.to_builtins(probe)}
    spec, note = device_spec(False, [], manifest)
    assert spec is not None and spec.flops == 317.3e9 and note == ""
    assert device_spec(False, [], None) == (None, BARE_CPU)  # a bare CPU trace: never
    assert device_spec(False, [], {"hardware": {}}) == (None, NOT_RECORDED)
    failed = {"peaks": msgspec.to_builtins(RecordedPeaks(device="cpu", error="probe failed: X"))}
    assert device_spec(False, [], failed) == (
        None,
        "the CPU probe measured nothing at capture: probe failed: X",
    )
    spec, note = device_spec(False, [], {"peaks": {"device": "tpu"}})
    assert spec is None and "unreadable" in note
    # GPUs: the trace's device names, else the names capture recorded; the table applies
    gpus = {"peaks": msgspec.to_builtins(RecordedPeaks(device="gpu", gpus=["NVIDIA H100 PCIe"]))}
    spec, _ = device_spec(True, [], gpus)
    assert spec is not None and spec.name == "H100 PCIe"
    spec, _ = device_spec(True, ["NVIDIA H200"], gpus)
    assert spec is not None and spec.name == "H200 SXM"
