"""A parallelism layout: the one type every part of tracekit uses for DP / TP / PP / EP.

``label`` is how a layout is shown (``DP=2 TP=2``; the degrees that are 1 left out, ``TP=1``
for one device); ``spec`` is how it is written on the command line and names a sweep's run
folder (``dp=2+tp=2``, ``+ep`` with expert parallelism).
"""

from __future__ import annotations

from typing import Literal

import msgspec

KEYS = ("dp", "tp", "pp")
Family = Literal["DP", "TP", "PP", "single"]


class Layout(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """Degrees of data, tensor and pipeline parallelism; ``ep`` is the expert-parallel group
    size (vLLM spreads the experts over DP × TP ranks with expert parallelism on; 1: off)."""

    dp: int = 1
    tp: int = 1
    pp: int = 1
    ep: int = 1

    @classmethod
    def of(cls, dp: int = 1, tp: int = 1, pp: int = 1, experts: bool = False) -> Layout:
        """A layout with expert parallelism on or off (EP groups span DP × TP, as in vLLM)."""
        return cls(dp=dp, tp=tp, pp=pp, ep=dp * tp if experts else 1)

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def experts(self) -> bool:
        """Expert parallelism on."""
        return self.ep > 1

    @property
    def label(self) -> str:
        """``TP=2``, ``DP=2 TP=2``, ``TP=4 EP=4``; ``TP=1`` for one device."""
        parts = [f"{k.upper()}={v}" for k, v in self._degrees() if v != 1]
        return " ".join(parts) or "TP=1"

    @property
    def spec(self) -> str:
        """The command line's form, also a sweep run's folder name: ``tp=2+pp=2``, ``+ep``."""
        parts = [f"{k}={v}" for k, v in zip(KEYS, (self.dp, self.tp, self.pp), strict=True)]
        kept = [p for p in parts if not p.endswith("=1")]
        order = {"tp": 0, "pp": 1, "dp": 2}  # the sweep's folders name TP first
        kept.sort(key=lambda p: order[p.split("=")[0]])
        return "+".join(kept + (["ep"] if self.experts else [])) or "tp=1"

    @property
    def family(self) -> Family:
        """The dominant parallelism (``TP``, ``DP``, ``PP``; ``single`` for one device)."""
        degrees: dict[Family, int] = {"TP": self.tp, "DP": self.dp, "PP": self.pp}
        top = max(degrees.values())
        return "single" if top == 1 else next(k for k, v in degrees.items() if v == top)

    def _degrees(self) -> list[tuple[str, int]]:
        return [("dp", self.dp), ("tp", self.tp), ("pp", self.pp), ("ep", self.ep)]
