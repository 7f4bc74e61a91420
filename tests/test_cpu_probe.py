"""The CPU probe without torch: the GEMM path choice on recorded results of both kinds of CPU,
the ISA flags, ``tracekit hw`` (one line and non-zero without torch; a status line per
measurement), and the record capture keeps (``collectors.peaks``, the manifest's ``peaks``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
from click.testing import CliRunner

from collectors import peaks as collector
from tests.peak_records import (
    AVX2_ONLY,
    EPYC_BF16_OLD_PROBE,
    XEON_AVX512_RUN1,
    XEON_AVX512_RUN2,
    XEON_ISA,
    cpu_probe,
    recorded,
)
from tracekit.cli_hw import hw_command
from tracekit.core import cpu_probe as probe_mod
from tracekit.core import rundir
from tracekit.core.cpu_probe import NEEDS_TORCH, RecordedPeaks, choose_peak, cpu_flags

GFLOP = 1e9


def test_choose_peak_without_avx512_bf16_or_amx() -> None:
    # AVX2 only: oneDNN failed, so F.linear's best is the peak — never the bf16 `a @ b`
    # (10× slower), the fp32 matmul or the numpy probe (~150× faster than bf16 a @ b)
    best = choose_peak(AVX2_ONLY, "bfloat16")
    assert best is not None and (best.path, best.flops) == ("F.linear", 10.0 * GFLOP)
    assert choose_peak(AVX2_ONLY, "float32") is None  # no engine path timed in fp32
    # avx512f + vnni without bf16 (this workplace's Xeon): the faster engine path wins,
    # and which one that is changed between two probes
    one, two = choose_peak(XEON_AVX512_RUN1, "bfloat16"), choose_peak(XEON_AVX512_RUN2, "bfloat16")
    assert one is not None and (one.path, one.flops, one.tokens) == ("F.linear", 27.7e9, 512)
    assert two is not None and (two.path, two.flops) == ("onednn_mm", 11.5e9)


def test_choose_peak_with_avx512_bf16() -> None:
    # the AVX-512-BF16 EPYC's probe of 2026-11-22 timed `a @ b` only: not a path vLLM's
    # linear layers take (its traces show _C::onednn_mm), so it gives no peak
    assert choose_peak(EPYC_BF16_OLD_PROBE, "bfloat16") is None
    # the same figure recorded for an engine path would be the peak
    engine = [msgspec.structs.replace(t, path="onednn_mm") for t in EPYC_BF16_OLD_PROBE]
    best = choose_peak(engine, "bfloat16")
    assert best is not None and best.flops == 317.3 * GFLOP


def test_cpu_flags_from_cpuinfo() -> None:
    xeon = "model name\t: Intel Xeon\nflags\t\t: fpu sse avx avx2 avx512f avx512cd avx512_vnni\n"
    spr = "flags : avx2 avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8\n"
    assert cpu_flags(xeon) == XEON_ISA
    assert cpu_flags(spr) == [
        "avx2",
        "avx512f",
        "avx512_bf16",
        "avx512_vnni",
        "amx_bf16",
        "amx_tile",
    ]
    assert cpu_flags("Features : fp asimd bf16\n") == []


def test_hw_without_torch_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    result = CliRunner().invoke(hw_command, [])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and NEEDS_TORCH in lines[0]
    assert not probe_mod.cache_path().exists()  # nothing written: no numpy stand-in


def test_hw_shows_each_measurement_and_saves(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = cpu_probe(27.7e9, 11.5e9, timings=XEON_AVX512_RUN1)
    shown: list[tuple[str, str | None]] = []

    def fake(dtype: str, report: probe_mod.Report | None = None, **_: object) -> object:
        assert dtype == "bfloat16" and report is not None
        for label, result in (("F.linear bfloat16 256×1024", None), ("F.linear", "27.7")):
            report(label, result)
            shown.append((label, result))
        return probe

    monkeypatch.setattr(probe_mod, "measure", fake)
    result = CliRunner().invoke(hw_command, [])
    assert result.exit_code == 0, result.output
    assert len(shown) == 2 and "F.linear: 27.7" in result.output  # finished lines printed
    assert "27.7 GFLOP/s" in result.output and "2.4 FLOP/byte" in result.output
    assert "avx2 avx512f avx512_vnni; 2 thread(s)" in result.output
    assert "GEMM path      F.linear (bfloat16) won" in result.output
    assert probe_mod.load() == probe


def test_hw_show_gpu_row() -> None:
    shown = CliRunner().invoke(hw_command, ["--show", "MI300X"])
    assert shown.exit_code == 0 and "ridge point" in shown.output and "AMD" in shown.output


def test_damaged_cache_is_a_domain_error(tmp_path: Path) -> None:
    path = tmp_path / "hw.json"
    path.write_text("{not json")
    with pytest.raises(Exception, match="unreadable CPU probe cache"):
        probe_mod.load(path)


# --- capture: the worker's record and the manifest --------------------------------------


def _worker(rank: int = 0, dp_index: int | None = 0) -> SimpleNamespace:
    return SimpleNamespace(
        rank=rank,
        parallel_config=SimpleNamespace(data_parallel_index=dp_index, data_parallel_rank=0),
        device=SimpleNamespace(type="cpu"),
        model_config=SimpleNamespace(dtype="torch.bfloat16"),
    )


def test_only_global_rank_zero_of_replica_zero_probes() -> None:
    assert collector.is_first_rank(_worker())
    assert not collector.is_first_rank(_worker(rank=1))
    assert not collector.is_first_rank(_worker(dp_index=1))
    assert collector.is_first_rank(_worker(dp_index=None))  # data_parallel_rank 0


def test_a_failed_probe_is_recorded_never_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_worker: object) -> RecordedPeaks:
        raise RuntimeError("no oneDNN and no F.linear")

    monkeypatch.setattr(collector, "_peaks", broken)
    path = tmp_path / "meta" / collector.PEAKS_FILE
    collector.record(_worker(), path)
    got = msgspec.json.decode(path.read_bytes(), type=RecordedPeaks)
    assert (
        got.cpu_probe is None
        and got.error == "probe failed: RuntimeError: no oneDNN and no F.linear"
    )


def test_read_what_the_worker_recorded(tmp_path: Path) -> None:
    engines = [{"device": "cpu"}]
    assert collector.read(tmp_path, []) == (None, None)  # no vLLM engine: nothing to probe
    missing, note = collector.read(tmp_path, engines)
    assert missing is not None and missing.cpu_probe is None and note
    assert "recorded no peaks" in (missing.error or "")
    meta = tmp_path / "meta"
    meta.mkdir()
    peaks = recorded(cpu_probe(10e9, 5e9))
    (meta / collector.PEAKS_FILE).write_bytes(msgspec.json.encode(peaks))
    assert collector.read(tmp_path, engines) == (peaks, None)
    (meta / collector.PEAKS_FILE).write_text("{")
    bad, note = collector.read(tmp_path, engines)
    assert bad is not None and "unreadable" in (bad.error or "") and note


def test_capture_puts_the_record_in_the_manifest(tmp_path: Path) -> None:
    """The wrapped command writes what the plugin's engine and worker hooks write."""
    run = tmp_path / "run"
    peaks = recorded(cpu_probe(10e9, 5e9))
    written = tmp_path / "peaks.json"
    written.write_bytes(msgspec.json.encode(peaks))
    code = (
        "import os, pathlib, shutil; "
        "meta = pathlib.Path(os.environ['TRACEKIT_CAPTURE_DIR']) / 'meta'; "
        "(meta / 'engine-0.json').write_text('{\"device\": \"cpu\"}'); "
        f"shutil.copy({str(written)!r}, meta / 'peaks.json')"
    )
    cmd = [sys.executable, "-m", "tracekit.cli", "capture", "--out", str(run), "--"]
    proc = subprocess.run(
        [*cmd, sys.executable, "-c", code], capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    manifest = rundir.read_manifest(run)
    assert manifest.peaks == peaks
    assert manifest.hardware["cpu_flags"] == cpu_flags()
