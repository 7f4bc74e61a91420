"""The streaming reader: exact results equal to a whole-document parse, wherever blocks end."""

from __future__ import annotations

import json
import os
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzers.read.json_stream import BLOCK, Reader, structure
from analyzers.read.kineto import _CATEGORY_KIND, parse_trace
from tracekit.core.errors import TracekitError
from tracekit.core.trace_model import Kind

BLOCKS = [1, 2, 3, 5, 8, 13, 64, 257, 4096, BLOCK]
TRICKY = [
    'a}, {"b": [1]}',
    'quote \\" inside',
    "ends with a backslash \\",
    "\\\\",
    "名前 ☃ 🎉 \u00e9",
    "brackets ] [ { } , :",
    "}, {",
    '"},{"',
    "line\u2028sep\ttab\nnewline",
    "",
]
CATS = ["kernel", "cpu_op", "cuda_runtime", "user_annotation", "gpu_memcpy", "Trace", "weird"]


def _events(n: int = 60) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        ts: Any = [1_669_783_687_464_181 + 7 * i, (6_520_430_063_606_411 + 997 * i) / 1000]
        ts = [*ts, 12.5 * i][i % 3]
        args = {
            "correlation": 1000 + i,
            "stream": 7,
            "device": i % 2,
            "External id": 500 + i,
            "nested": {"x": [{"y": "}, {"}, [1, [2, {"z": "]"}]]], "w": {"v": {}}},
            "Input Dims": [[1, 2], [], [3]],
        }
        event = {
            "ph": "X",
            "cat": CATS[i % len(CATS)],
            "name": TRICKY[i % len(TRICKY)] + f" #{i % 11}",
            "ts": ts,
            "dur": [3, 0.25, 1000][i % 3],
            "pid": "Spans" if i % 9 == 0 else 100 + i % 2,
            "tid": "thread {0}" if i % 5 == 0 else 7,
        }
        if i % 4:
            event["args"] = args
        out.append(event)
        if i % 10 == 3:
            out.append({"ph": "B", "name": "b", "ts": 1, "pid": 1, "tid": 1})
            out.append({"ph": "i", "name": "mark }, {", "ts": 2, "pid": 1, "tid": 1, "s": "g"})
        if i % 10 == 4:
            out.append({"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "}]"}})
    return out


EXTRA = {
    "schemaVersion": 1,
    "deviceProperties": [{"id": 0, "name": "GPU {0}"}, {"id": 1, "name": "]"}],
    "distributedInfo": {"backend": "nccl", "rank": 3, "world_size": 8},
    "traceName": "x}, {y",
    "displayTimeUnit": "ms",
    "unknown": [{"a": [1, {"b": None}]}, True, False, None, -1.5e-3],
}


def _dump(value: Any, style: str) -> str:
    if style == "compact":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if style == "pretty":
        return json.dumps(value, indent=2)
    if style == "tabs-crlf":
        return json.dumps(value, indent="\t", ensure_ascii=False).replace("\n", "\r\n")
    return json.dumps(value, separators=(" , ", " : "))  # "spaced"


def _document(style: str, layout: str, base: int | None = 1_711_964_646_000_000_000) -> bytes:
    events = _events()
    if layout == "list":
        return _dump(events, style).encode()
    head = {k: EXTRA[k] for k in ("schemaVersion", "deviceProperties")}
    tail = {k: v for k, v in EXTRA.items() if k not in head}
    if base is not None:
        tail["baseTimeNanoseconds"] = base
    doc = (
        {**head, "traceEvents": events, **tail}
        if layout == "keys-after"
        else {**head, **tail, "traceEvents": events}
    )
    return _dump(doc, style).encode()


def _reference(text: bytes) -> dict[str, Any]:
    """What a whole-document parse says, computed independently of the parser."""
    doc = json.loads(text, parse_float=Decimal)
    events = doc if isinstance(doc, list) else doc["traceEvents"]
    base = 0 if isinstance(doc, list) else doc.get("baseTimeNanoseconds") or 0
    labels: dict[str, int] = {}

    def ident(value: Any) -> int:
        number = _integral(value)
        return number if number is not None else -2 - labels.setdefault(str(value), len(labels))

    rows = []
    for e in events:
        if e.get("ph") != "X":
            continue
        args = e.get("args") or {}
        pid, tid = ident(e.get("pid", 0)), ident(e.get("tid", 0))
        rows.append(
            (
                _ns(e.get("ts", 0)) + base,
                _ns(e.get("dur", 0)),
                e.get("name", ""),
                int(_CATEGORY_KIND.get(e.get("cat", "").lower(), Kind.OTHER)),
                pid,
                tid,
                *(
                    -1 if (n := _integral(args.get(k))) is None else n
                    for k in ("correlation", "stream", "device", "External id")
                ),
            )
        )
    rows.sort(key=lambda r: r[0])  # stable, like the parser's
    meta = {} if isinstance(doc, list) else doc
    return {
        "rows": rows,
        "ignored": sum(1 for e in events if e.get("ph") in ("B", "E")),
        "dist": meta.get("distributedInfo"),
        "props": meta.get("deviceProperties") or [],
        "base": base,
    }


def _integral(value: Any) -> int | None:
    """An id as the parser reads it, restated: a number with no fraction within int64, or a
    decimal or 0x text of one; None (unknown) for anything else."""
    if isinstance(value, str):
        try:
            value = int(value.strip(), 16 if "0x" in value.lower() else 10)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or value != int(value):
        return None
    return int(value) if -(2**63) <= value < 2**63 else None


def _ns(us: Decimal | int) -> int:
    return int((Decimal(us) * 1000).to_integral_value())  # nearest, ties to even


def _parsed(path: Path, block: int) -> dict[str, Any]:
    p = parse_trace(path, block=block)
    ev = p.events
    cols: list[np.ndarray] = [ev.start_ns, ev.dur_ns, ev.name_id, ev.kind, ev.pid, ev.tid]
    cols += [ev.correlation, ev.stream, ev.device, ev.external_id]
    rows = [
        (r[0], r[1], p.names[r[2]], *r[3:]) for r in zip(*(c.tolist() for c in cols), strict=True)
    ]
    return {
        "rows": rows,
        "ignored": sum(p.ignored.values()),
        "dist": p.distributed_info,
        "props": p.device_properties,
        "base": p.clock == "baseTimeNanoseconds",
    }


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("style", ["compact", "pretty", "tabs-crlf", "spaced"])
@pytest.mark.parametrize("layout", ["keys-after", "keys-before", "list"])
def test_tricky_documents_equal_a_whole_parse(
    tmp_path: Path, block: int, style: str, layout: str
) -> None:
    text = _document(style, layout)
    path = tmp_path / "t.json"
    path.write_bytes(text)
    want, got = _reference(text), _parsed(path, block)
    assert got["rows"] == want["rows"]
    assert got["ignored"] == want["ignored"]
    assert (got["dist"], got["props"]) == (want["dist"], want["props"])
    assert got["base"] == (want["base"] != 0)


@pytest.mark.parametrize("block", [1, 7, 4096])
def test_gzip_and_plain_agree(tmp_path: Path, block: int) -> None:
    import gzip

    text = _document("pretty", "keys-after")
    (tmp_path / "t.json.gz").write_bytes(gzip.compress(text))
    (tmp_path / "t.json").write_bytes(text)
    assert _parsed(tmp_path / "t.json.gz", block) == _parsed(tmp_path / "t.json", block)


def test_repeated_trace_events_key_last_one_wins(tmp_path: Path) -> None:
    one = '{"ph":"X","name":"first","ts":1,"dur":1,"pid":1,"tid":1}'
    two = '{"ph":"X","name":"second","ts":2,"dur":1,"pid":1,"tid":1}'
    path = tmp_path / "t.json"
    path.write_text(f'{{"traceEvents":[{one}],"x":1,"traceEvents":[{two},{two}]}}')
    parsed = parse_trace(path, block=3)
    assert parsed.names == ["second"]
    assert len(parsed.events) == 2


BAD = {
    "trailing comma": b'{"traceEvents":[{"ph":"X"},]}',
    "leading comma": b'{"traceEvents":[,{"ph":"X"}]}',
    "missing comma": b'{"traceEvents":[{"ph":"X"} {"ph":"X"}]}',
    "wrong closer": b'{"traceEvents":[{"ph":"X"},{"ph":"X"}}}',
    "garbage after": b'{"traceEvents":[{"ph":"X","ts":1,"dur":1}]} x',
    "garbage in array": b'{"traceEvents":[{"ph":"X"}, x]}',
    "key not a string": b'{traceEvents:[{"ph":"X"}]}',
    "no colon": b'{"traceEvents" [{"ph":"X"}]}',
    "unterminated string": b'{"traceEvents":[{"ph":"X","name":"a}]}',
    "bad escape": b'{"traceEvents":[{"ph":"X","name":"\\q"}]}',
    "control char": b'{"traceEvents":[{"ph":"X","name":"a\x01"}]}',
    "bad value after": b'{"traceEvents":[{"ph":"X","ts":1,"dur":1}],"traceName":tru}',
    "unclosed object": b'{"traceEvents":[{"ph":"X","ts":1,"dur":1}]',
    "list form trailing": b'[{"ph":"X","ts":1,"dur":1}] ]',
}


@pytest.mark.parametrize("block", [1, 2, 5, 4096])
@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_json_is_one_error(tmp_path: Path, case: str, block: int) -> None:
    text = BAD[case]
    with pytest.raises(ValueError):
        json.loads(text)
    path = tmp_path / "bad.json"
    path.write_bytes(text)
    with pytest.raises(TracekitError) as info:
        parse_trace(path, block=block)
    assert "invalid JSON" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("block", [1, 3, 64])
def test_every_truncation_is_an_error(tmp_path: Path, block: int) -> None:
    text = b'{"traceEvents":[' + b",".join(json.dumps(e).encode() for e in _events(6)) + b"]}"
    path = tmp_path / "t.json"
    for cut in range(1, len(text) - 1):
        path.write_bytes(text[:cut])
        with pytest.raises(TracekitError):
            parse_trace(path, block=block)


def _reference_structure(text: bytes) -> list[tuple[int, int, int]]:
    out, depth, in_string, escaped = [], 0, False, False
    for i, c in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif c == 0x5C:
                escaped = True
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in b"{[":
            depth += 1
            out.append((i, 1, depth))
        elif c in b"}]":
            depth -= 1
            out.append((i, -1, depth))
        elif c == 0x2C:
            out.append((i, 2, depth))
    return out


_TEXT = st.text(alphabet=st.sampled_from(list('ab"\\{}[],: é☃\n')), max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)
FUZZ = settings(
    max_examples=int(os.environ.get("TRACEKIT_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(value=JSON, lead=st.sampled_from(["", " ", '"x",', "[1,2],"]))
def test_structure_matches_a_byte_by_byte_scan(value: Any, lead: str) -> None:
    text = (lead + json.dumps(value, ensure_ascii=False)).encode()
    where, code, depth = structure(text, 0)
    assert list(zip(where.tolist(), code.tolist(), depth.tolist(), strict=True)) == (
        _reference_structure(text)
    )


@FUZZ
@given(
    items=st.lists(JSON, max_size=8),
    block=st.sampled_from([1, 2, 3, 16, 4096]),
    objects=st.booleans(),
)
def test_any_array_decodes_like_a_whole_parse(
    tmp_path: Path, items: list[Any], block: int, objects: bool
) -> None:
    if objects:  # objects: the fast guess's case
        items = [{"k": v, "}, {": "}, {"} for v in items]
    text = json.dumps({"before": items, "a": items, "after": [items]}, ensure_ascii=False)
    path = tmp_path / "a.json"
    path.write_bytes(text.encode())
    reader, got = Reader(path, block), {}
    assert reader.peek() == ord("{")
    decoder = msgspec.json.Decoder(list[Any])
    for key in reader.members():
        if key == "a":
            got[key] = [x for chunk, _, _ in reader.array(decoder) for x in chunk]
        else:
            got[key] = json.loads(reader.value())
    reader.end()
    assert got == json.loads(text)


def test_columns_are_exact_int64(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(_document("compact", "keys-after", base=None))
    ev = parse_trace(path, block=5).events
    assert all(getattr(ev, k).dtype == np.int64 for k in ("start_ns", "dur_ns", "pid", "tid"))
    assert 6_520_430_063_607_408 in ev.start_ns.tolist()  # event 1: (…606_411 + 997) / 1000 µs


SMALL = json.dumps(
    {"schemaVersion": 1, "traceEvents": _events(8), "traceName": "}, {", "baseTimeNanoseconds": 5}
).encode()


@FUZZ
@given(
    at=st.integers(0, len(SMALL) - 1),
    byte=st.sampled_from(list(b'{}[],:"\\ 0a-.eE\n')),
    block=st.sampled_from([1, 3, 4096]),
)
def test_a_flipped_byte_never_passes_as_valid(
    tmp_path: Path, at: int, byte: int, block: int
) -> None:
    text = SMALL[:at] + bytes([byte]) + SMALL[at + 1 :]
    path = tmp_path / "f.json"
    path.write_bytes(text)
    try:
        json.loads(text)
    except ValueError:
        with pytest.raises(TracekitError):
            parse_trace(path, block=block)
        return
    try:
        got = _parsed(path, block)
    except TracekitError:
        return  # valid JSON, not a valid trace
    assert got["rows"] == _reference(text)["rows"]


def _shaped_trace(path: Path, n: int, shapes: bool) -> Path:
    sigs = [([[64, 512], [512, 512]], ["c10::BFloat16"] * 2), ([[8]], ["float"]), ([[]], [""])]
    events = []
    for i in range(n):
        args: dict[str, Any] = {"External id": i}
        if shapes:
            dims, types = sigs[i % len(sigs)]
            args |= {"Input Dims": dims, "Input type": types}
        events.append(
            {"ph": "X", "cat": "cpu_op", "name": f"op{i % 7}", "ts": i, "dur": 1, "pid": 1,
             "tid": 1, "args": args}
        )  # fmt: skip
    path.write_bytes(json.dumps({"traceEvents": events}).encode())
    return path


def _peak_parse(path: Path) -> tuple[int, Any]:
    tracemalloc.start()
    try:
        parsed = parse_trace(path, block=1 << 16)
        return tracemalloc.get_traced_memory()[1], parsed
    finally:
        tracemalloc.stop()


def test_shapes_keep_the_parse_streaming(tmp_path: Path) -> None:
    n = 60_000
    plain = _shaped_trace(tmp_path / "plain.json", n, shapes=False)
    shaped = _shaped_trace(tmp_path / "shaped.json", n, shapes=True)
    peak_plain, _ = _peak_parse(plain)
    peak_shaped, parsed = _peak_parse(shaped)
    # the shape table holds the distinct (op, dims, types): 21 here, not the events
    assert len(parsed.events.shapes.signatures) == 21
    assert (parsed.events.shape_id >= 0).all()
    # the shapes' text is never held (it is 1/3 of this file): recording shapes costs no
    # more than a chunk, and memory follows the columns (81 bytes a row, 12 of them for
    # shape_id and msg_bytes, grown by half and sorted), not the file's 178 bytes a row
    assert shaped.stat().st_size - plain.stat().st_size > 3 << 20
    assert peak_shaped - peak_plain < 1 << 20
    assert peak_shaped < n * 112 + (1 << 20)
