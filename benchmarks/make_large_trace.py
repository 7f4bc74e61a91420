"""Make large Kineto traces by tiling a real one: N time-shifted copies of its events.

Usage (from the repo root; outputs are scratch files, never committed):

    .venv/bin/python benchmarks/make_large_trace.py --times 16 --out /tmp/big.json.gz
    .venv/bin/python benchmarks/make_large_trace.py --times 40 --out /tmp/big.json  # 2.1 GB
    .venv/bin/python benchmarks/make_large_trace.py --ranks 8 --out /tmp/ranks8     # a folder

Copy k of the source's ``traceEvents`` has every ``"ts"`` moved by k periods (the source's
span plus a 1 ms gap: copies never overlap) and every ``"correlation"`` / ``"External id"``
moved by k times (the largest id + 1), so runtime→kernel links stay within one copy. The
numbers are rewritten as text, exactly (the fractional digits are kept, never a float sum).
Everything else is byte for byte the source's, in the source's key order (keys after
``traceEvents`` stay after it). With ``--ranks R`` the output is a folder of R files
``rank-<r>.json[.gz]`` whose ``distributedInfo`` says rank r of world_size R. ``.gz`` output
(the default name) is written with isal's fast level 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import msgspec
import orjson
from isal import igzip

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared/traces/hta_v100_allreduce/rank-1.json.gz"
GAP_US = 1000
# A key (a quoted name followed by ':' can only be a key) and its number.
_NUMBER = re.compile(
    rb'"(ts|dur|correlation|External id)"([ \t\n\r]*:[ \t\n\r]*)(-?[0-9][0-9.eE+-]*)'
)


_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])


class Template:
    """The source's events text cut around the numbers that move between copies."""

    def __init__(self, events_text: bytes) -> None:
        self.pieces: list[bytes] = []  # the text between numbers: len(numbers) + 1 pieces
        self.kinds: list[bytes] = []
        self.numbers: list[bytes] = []
        at = 0
        for m in _NUMBER.finditer(events_text):
            self.pieces.append(events_text[at : m.start(3)])
            self.kinds.append(m[1])
            self.numbers.append(m[3])
            at = m.end(3)
        self.pieces.append(events_text[at:])
        by_kind: dict[bytes, list[bytes]] = {}
        for kind, num in zip(self.kinds, self.numbers, strict=True):
            by_kind.setdefault(kind, []).append(num)
        ts = [_us_to_ns(n) for n in by_kind.get(b"ts", [])]
        longest = max((_us_to_ns(n) for n in by_kind.get(b"dur", [])), default=0)
        span_ns = max(ts) - min(ts) + longest if ts else 0
        self.period_us = span_ns // 1000 + GAP_US
        ids = [int(n) for k in (b"correlation", b"External id") for n in by_kind.get(k, [])]
        self.id_step = max(ids, default=0) + 1

    def copy(self, k: int) -> bytes:
        """The events text of copy ``k``."""
        if k == 0:
            numbers = self.numbers
        else:
            shift_us, shift_id = k * self.period_us, k * self.id_step
            numbers = [
                num
                if kind == b"dur"
                else _shift_us(num, shift_us)
                if kind == b"ts"
                else num
                if num.startswith(b"-")
                else b"%d" % (int(num) + shift_id)
                for kind, num in zip(self.kinds, self.numbers, strict=True)
            ]
        out: list[bytes] = [b""] * (2 * len(numbers) + 1)
        out[0::2] = self.pieces
        out[1::2] = numbers
        return b"".join(out)


def _us_to_ns(text: bytes) -> int:
    return int(Decimal(text.decode()) * 1000)


def _shift_us(text: bytes, shift: int) -> bytes:
    """``text`` (decimal µs) + ``shift`` µs, as exact decimal text."""
    whole, dot, frac = text.partition(b".")
    if b"e" in text.lower() or (whole.startswith(b"-") and frac):
        return str(Decimal(text.decode()) + shift).encode()
    return b"%d" % (int(whole) + shift) + dot + frac


def split_source(source: Path) -> tuple[dict[str, msgspec.Raw], bytes]:
    """(top-level values as raw text, the traceEvents array's inner text)."""
    data = source.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = igzip.decompress(data)  # type: ignore[no-untyped-call]
    top = _TOP.decode(data)
    events = bytes(top["traceEvents"]).strip()
    if not events.startswith(b"[") or not events.endswith(b"]"):
        raise SystemExit(f"{source}: traceEvents is not an array")
    return top, events[1:-1].strip()


def write_trace(
    out: Path,
    top: dict[str, msgspec.Raw],
    template: Template,
    times: int,
    dist: dict[str, Any] | None = None,
) -> int:
    """Write ``times`` copies; returns the uncompressed size in bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    opener: Any = igzip.open if out.name.endswith(".gz") else open
    size = 0
    with opener(tmp, "wb", **({"compresslevel": 1} if opener is not open else {})) as f:
        size += _write(f, b"{")
        for n, (key, raw) in enumerate(top.items()):
            size += _write(f, (b",\n" if n else b"\n") + orjson.dumps(key) + b": ")
            if key == "traceEvents":
                size += _write(f, b"[\n")
                for k in range(times):
                    size += _write(f, b",\n" if k else b"")
                    size += _write(f, template.copy(k))
                size += _write(f, b"\n]")
            elif key == "distributedInfo" and dist is not None:
                size += _write(f, json.dumps(dist).encode())  # '"rank": N' as Kineto writes
            else:
                size += _write(f, bytes(raw))
        if dist is not None and "distributedInfo" not in top:
            size += _write(f, b',\n"distributedInfo": ' + json.dumps(dist).encode())
        size += _write(f, b"\n}\n")
    tmp.replace(out)
    return size


def _write(f: IO[bytes], data: bytes) -> int:
    f.write(data)
    return len(data)


def make(source: Path, out: Path, times: int, ranks: int = 1) -> list[Path]:
    """Write the tiled trace(s); with ranks > 1, ``out`` is a folder of rank files."""
    top, events = split_source(source)
    template = Template(events)
    if ranks <= 1:
        write_trace(out, top, template, times)
        return [out]
    old = orjson.loads(bytes(top["distributedInfo"])) if "distributedInfo" in top else {}
    suffix = ".json.gz" if not out.name.endswith(".json") else ".json"
    paths = []
    for rank in range(ranks):
        dist = {**old, "rank": rank, "world_size": ranks}
        paths.append(out / f"rank-{rank}{suffix}")
        write_trace(paths[-1], top, template, times, dist)
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--times", type=int, default=1, help="copies of the source's events")
    ap.add_argument("--ranks", type=int, default=1, help="write a folder of this many ranks")
    ap.add_argument("--out", type=Path, required=True, help="file (.json or .json.gz) or folder")
    args = ap.parse_args()
    if not args.source.is_file():
        print(f"error: source trace not found: {args.source}", file=sys.stderr)
        return 2
    for path in make(args.source, args.out, max(1, args.times), args.ranks):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
