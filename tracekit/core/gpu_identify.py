"""Which spec-table row a GPU is, from its runtime properties when its name says nothing.

ROCm traces often name no device (``"name": ""``) or a generic one ("AMD Radeon
Graphics"), yet Kineto's ``deviceProperties`` still say the architecture (compute major /
minor: the CUDA compute capability, or ROCm's gfx IP version), the SM / compute-unit count
and the memory size. Those are matched against the signatures of the table's rows
(``tracekit.core.hardware.SIGNATURES``), and against parts the table has no row for that read
the same (``LOOKALIKES``): one match identifies the device, and its peaks say so; two are
not told apart by a guess.

The properties travel with the device's name: a device whose name the table does not know
goes by that name followed by its property label, ``"[compute 9.4, 304 CUs, 192.0 GiB,
warp 64]"`` (``device_name``), which ``lookup`` reads back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tracekit.core import hardware
from tracekit.core.hardware import GIB, DeviceSpec, Signature

#: how close the memory the runtime reports must be to the part's nominal size (the
#: runtime holds some back: an MI300X reports 191.98 GiB of 192, an H100 79.6 of 80)
MEMORY_TOLERANCE: Final = 0.05

_LABEL = re.compile(
    r"\s*\[compute (\d+)\.(\d+), (\d+) (?:CUs|SMs), ([0-9.]+) GiB(?:, warp (\d+))?\]$"
)


@dataclass(frozen=True)
class Properties:
    """The identifying part of one ``deviceProperties`` entry."""

    compute: tuple[int, int]
    units: int
    memory_gib: float
    warp: int | None = None

    @property
    def unit_word(self) -> str:
        return "CUs" if self.warp == 64 else "SMs"

    def label(self) -> str:
        warp = f", warp {self.warp}" if self.warp else ""
        major, minor = self.compute
        return (
            f"[compute {major}.{minor}, {self.units} {self.unit_word}, "
            f"{self.memory_gib:.1f} GiB{warp}]"
        )


def properties(raw: Mapping[str, Any]) -> Properties | None:
    """The properties of a ``deviceProperties`` entry, or None where one is missing."""
    values = [raw.get(k) for k in ("computeMajor", "computeMinor", "numSms", "totalGlobalMem")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        return None
    major, minor, units, memory = (int(v) for v in values)  # type: ignore[arg-type]
    if units == 0 or memory == 0:
        return None
    warp = raw.get("warpSize")
    return Properties(
        (major, minor),
        units,
        round(memory / GIB, 1),
        warp if isinstance(warp, int) and not isinstance(warp, bool) and warp > 0 else None,
    )


def device_key(raw: Mapping[str, Any]) -> str:
    """What the spec table is looked up by: the trace's name, with its property label after
    it where the table does not know that name (and the entry has the properties). A lookup
    key only: reports show the trace's own name."""
    name = str(raw.get("name", "")).strip()
    if hardware.gpu_spec(name) is not None:
        return name
    props = properties(raw)
    return name if props is None else f"{name} {props.label()}".strip()


def split(name: str) -> tuple[str, Properties | None]:
    """A ``device_key`` back into the trace's name and the properties labelled after it."""
    match = _LABEL.search(name)
    if match is None:
        return name, None
    major, minor, units, gib, warp = match.groups()
    props = Properties(
        (int(major), int(minor)), int(units), float(gib), int(warp) if warp else None
    )
    return name[: match.start()], props


def lookup(name: str) -> tuple[DeviceSpec | None, str]:
    """The peaks of a device that goes by ``name`` (``device_name``'s): the table row its
    name matches, else the one its properties identify; with why there are none if not."""
    plain, props = split(name)
    spec = hardware.gpu_spec(plain) if plain else None
    if spec is not None or props is None:
        return spec, ""
    return identify(props)


def identify(props: Properties) -> tuple[DeviceSpec | None, str]:
    """The spec-table row the properties fit, or None and why: none fits, or more than one
    part does (refused: the peaks of a guess would be presented as the device's)."""
    fits = [(n, s) for n, s in (*hardware.SIGNATURES, *hardware.LOOKALIKES) if _fits(s, props)]
    names = list(dict.fromkeys(n for n, _ in fits))
    seen = _describe(props)
    if not names:
        return None, f"device properties {seen} match no spec-table row"
    if len(names) > 1:
        return None, f"device properties {seen} match {' and '.join(names)}: not guessing which"
    (name, sig), *_ = fits
    if name not in hardware.GPU_NAMES:
        return None, f"device properties {seen} are a {name}'s, which the spec table lacks"
    how = (
        f"identified from device properties: {sig.arch}, {props.units} {props.unit_word}, "
        f"{props.memory_gib:.0f} GiB → {name}"
    )
    return hardware.identified_spec(name, how), ""


def _fits(sig: Signature, props: Properties) -> bool:
    return (
        sig.compute == props.compute
        and sig.units == props.units
        and (props.warp is None or sig.warp == props.warp)
        and abs(props.memory_gib - sig.memory_gib) <= MEMORY_TOLERANCE * sig.memory_gib
    )


def _describe(props: Properties) -> str:
    major, minor = props.compute
    return f"(compute {major}.{minor}, {props.units} {props.unit_word}, {props.memory_gib:.0f} GiB)"
