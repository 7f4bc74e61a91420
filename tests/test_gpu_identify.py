"""Knowing a GPU from its deviceProperties when its name says nothing (ROCm's ``""``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tracekit
from analyzers.read.loader import devices_properties
from analyzers.read.run_facts import device_spec
from tests.conftest import shared
from tests.test_roofline import gpu_run
from tracekit.core import gpu_identify, hardware
from tracekit.core.gpu_identify import Properties, identify, properties

GIB = 2**30
#: what the shared vLLM MI300X trace writes for each of its eight GPUs
MI300X_PROPS: dict[str, Any] = {
    "id": 0,
    "name": "",
    "totalGlobalMem": 206141652992,
    "computeMajor": 9,
    "computeMinor": 4,
    "warpSize": 64,
    "numSms": 304,
}
IDENTIFIED = "identified from device properties: gfx942, 304 CUs, 192 GiB → MI300X"


def props(major: int, minor: int, units: int, gib: float, warp: int) -> Properties:
    raw = {
        "computeMajor": major,
        "computeMinor": minor,
        "numSms": units,
        "totalGlobalMem": int(gib * GIB),
        "warpSize": warp,
    }
    got = properties(raw)
    assert got is not None
    return got


def test_unique_match_identifies_the_part_and_says_so() -> None:
    spec, note = identify(props(9, 4, 304, 191.98, 64))
    assert spec is not None and note == ""
    assert (spec.name, spec.flops, spec.bandwidth) == ("MI300X", 1307.4e12, 5.3e12)
    assert spec.source.startswith("spec table: AMD MI300X datasheet") and IDENTIFIED in spec.source


@pytest.mark.parametrize(
    ("signature", "name"),
    [
        ((9, 4, 304, 255.98, 64), "MI325X"),  # same die as the MI300X, more memory
        ((9, 4, 228, 128.0, 64), "MI300A"),
        ((9, 0, 110, 63.98, 64), "MI250X (one GCD)"),  # the runtime sees one GCD
        ((9, 0, 114, 79.6, 32), "H100 PCIe"),
        ((9, 0, 132, 93.6, 32), "H100 NVL"),
        ((9, 4, 304, 191.98, None), "MI300X"),  # no warpSize: the rest decides
    ],
)
def test_other_parts_by_their_signature(signature: tuple[Any, ...], name: str) -> None:
    major, minor, units, gib, warp = signature
    spec, _ = identify(Properties((major, minor), units, gib, warp))
    assert spec is not None and spec.name == name


def test_two_parts_that_read_the_same_are_refused() -> None:
    # one GCD of an MI250 and an MI210: gfx90a, 104 CUs, 64 GiB each
    spec, note = identify(props(9, 0, 104, 63.98, 64))
    assert spec is None
    assert "MI250 (one GCD) and MI210" in note and "not guessing" in note
    # an H100 SXM's properties are an H800's too (other links): no row is presumed
    spec, note = identify(props(9, 0, 132, 79.6, 32))
    assert spec is None and "H100 SXM and H800" in note
    assert "A100 80GB and A800 80GB" in identify(props(8, 0, 108, 79.2, 32))[1]


def test_unknown_properties_give_none() -> None:
    spec, note = identify(props(7, 0, 80, 31.7, 32))  # a V100: no row
    assert (
        spec is None
        and note == "device properties (compute 7.0, 80 SMs, 32 GiB) match no spec-table row"
    )
    # the right architecture and units but not the memory (a CPX partition, say)
    assert identify(props(9, 4, 304, 24.0, 64))[0] is None
    assert identify(props(9, 4, 304, 192.0, 32))[0] is None  # an NVIDIA warp: not the part
    assert properties({"name": "", "numSms": 304}) is None
    assert properties({**MI300X_PROPS, "computeMajor": True}) is None


def test_device_name_labels_what_the_table_does_not_know() -> None:
    named = {**MI300X_PROPS, "name": "AMD Instinct MI300X"}
    assert gpu_identify.device_key(named) == "AMD Instinct MI300X"
    label = gpu_identify.device_key(MI300X_PROPS)
    assert label == "[compute 9.4, 304 CUs, 192.0 GiB, warp 64]"
    generic = gpu_identify.device_key({**MI300X_PROPS, "name": "AMD Radeon Graphics"})
    assert generic == f"AMD Radeon Graphics {label}"
    assert gpu_identify.split(generic) == ("AMD Radeon Graphics", props(9, 4, 304, 192.0, 64))
    assert gpu_identify.device_key({"id": 0, "name": ""}) == ""
    assert gpu_identify.lookup(label)[0] == gpu_identify.lookup(generic)[0]


def test_device_spec_uses_the_identification_and_names_both_candidates() -> None:
    label = gpu_identify.device_key(MI300X_PROPS)
    spec, note = device_spec(True, [label], None)
    assert spec is not None and spec.name == "MI300X" and note == ""
    mi250 = {**MI300X_PROPS, "computeMinor": 0, "numSms": 104, "totalGlobalMem": 68702699520}
    spec, note = device_spec(True, [gpu_identify.device_key(mi250)], None)
    assert spec is None
    assert note.startswith("no spec-table row for the device(s)")
    assert "match MI250 (one GCD) and MI210: not guessing which" in note
    # a name the table knows wins over properties
    assert device_spec(True, ["NVIDIA H100 80GB HBM3"], None)[0] == hardware.gpu_spec("H100")


def test_renumbered_device_takes_the_processs_only_part() -> None:
    one = [{**MI300X_PROPS, "name": "AMD Instinct MI300X"}]
    assert devices_properties([9], one) == one  # SGLang: lists device 0, runs on device 9
    two = [MI300X_PROPS, {**MI300X_PROPS, "id": 1, "numSms": 228}]
    assert devices_properties([9], two) == []  # two different parts: not known which
    assert devices_properties([1], two) == [two[1]]
    assert devices_properties([], one) == []


def test_new_rows_by_name() -> None:
    for device, name in {
        "AMD Instinct MI325X": "MI325X",
        "AMD Instinct MI300A": "MI300A",
        "AMD Instinct MI250X": "MI250X (one GCD)",
        "AMD Instinct MI250": "MI250 (one GCD)",
        "AMD Instinct MI210": "MI210",
    }.items():
        spec = hardware.gpu_spec(device)
        assert spec is not None and spec.name == name, device
    assert {n for n, _ in hardware.SIGNATURES} <= set(hardware.GPU_NAMES)


def test_an_unnamed_mi300x_trace_gets_its_roofline(tmp_path: Path) -> None:
    run = gpu_run(tmp_path, {"deviceProperties": [MI300X_PROPS]})
    analysis = tracekit.analyze(run)
    assert analysis.peaks.origin == "spec table" and IDENTIFIED in analysis.peaks.source
    (rank,) = analysis.ranks
    assert rank.roofline is not None and rank.roofline.device == "MI300X"


# -- the real shared ROCm traces (skipped where ../shared/traces is absent) ---------------


def test_shared_vllm_mi300x_trace_is_identified() -> None:
    analysis = tracekit.analyze(shared("vllm_mi300x_decode_cudagraph/graph_execution.json.gz"))
    assert analysis.peaks.origin == "spec table"
    assert analysis.peaks.source.startswith("MI300X: spec table: AMD MI300X datasheet")
    assert IDENTIFIED in analysis.peaks.source
    (rank,) = analysis.ranks
    assert rank.device_names == [""]  # the trace's own name, as ROCm wrote it
    assert rank.roofline is not None and rank.roofline.ops_decided_ns > 0


def test_shared_sglang_mi300x_trace_finds_its_renumbered_device() -> None:
    analysis = tracekit.analyze(shared("sglang_mi300x_qwen3_8b_decode/trace.json.gz"))
    (rank,) = analysis.ranks
    assert rank.device_names == ["AMD Instinct MI300X"]
    assert analysis.peaks.source.startswith("MI300X: spec table")
    assert rank.roofline is not None


def test_shared_mi250_trace_is_not_guessed() -> None:
    analysis = tracekit.analyze(shared("hta_mi250_rocm/trace.json.gz"))
    assert analysis.peaks.origin == "none"
    assert "match MI250 (one GCD) and MI210: not guessing which" in analysis.peaks.source
