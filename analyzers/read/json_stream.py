"""Read one JSON document incrementally, in bounded memory, and decode its big array in chunks.

The file is decompressed block by block (isal's streaming gzip reader). Small values are
returned whole; an array is handed to a msgspec decoder in chunks of complete elements, so
only about one block of text and one chunk of decoded elements are alive at a time.

Finding where a chunk may end is the hard part: a byte such as ``,`` or ``]`` is structural
only outside strings. Two ways, both exact:

* the fast guess: the last ``}`` ``,`` ``{`` in the buffer is nearly always a boundary between
  two elements (objects) of the array. The guess is accepted only when msgspec decodes
  ``[`` + text + ``]`` as a whole: since the text starts at a known element boundary, its
  tokens are those of the document, so a successful decode proves the cut is a boundary.
* the scan: ``structure`` finds every structural byte outside strings (vectorised with numpy:
  quote parity for the string state, a cumulative sum for the depth). Used where the guess
  fails: the array's end, strings holding ``}, {``, invalid input, elements that are not
  objects.

Every byte of the document is validated: by msgspec (chunks, values, keys) or here (the
punctuation between them). Errors give the byte offset in the (decompressed) document.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar, cast

import msgspec
import numpy as np
from isal import igzip, isal_zlib

from tracekit.core.errors import TracekitError

BLOCK = 2 << 20  # bytes of decompressed text read at a time (cache-sized chunks decode fastest)
_TAIL = 1 << 16  # where the guess looks first: the buffer's last bytes
_WS = re.compile(rb"[ \t\n\r]*")
_SCALAR_END = re.compile(rb"[ \t\n\r,\]}]")
_CUT = re.compile(rb"\}[ \t\n\r]*(,)[ \t\n\r]*\{")
_BYTE = re.compile(r"\(byte (\d+)\)")
_PATH = re.compile(r"`\$(?:\[(\d+)\])?")
_QUOTE, _BACKSLASH, _COMMA = 0x22, 0x5C, 0x2C
_DEPTH = np.zeros(256, dtype=np.int8)  # +1 opens, -1 closes, 2 marks a comma
_DEPTH[[ord("{"), ord("[")]] = 1
_DEPTH[[ord("}"), ord("]")]] = -1
_DEPTH[_COMMA] = 2
_ISAL_ERROR = cast(type[Exception], isal_zlib.error)  # corrupt deflate data: not an OSError
_BAD_GZIP = (EOFError, OSError, zlib.error, gzip.BadGzipFile, _ISAL_ERROR)

T = TypeVar("T")
_KEY = msgspec.json.Decoder(str)


def read_blocks(path: Path, size: int = BLOCK) -> Iterator[bytes]:
    """The file's text in blocks of ``size`` bytes, gunzipped where it is gzip."""
    try:
        raw: BinaryIO = path.open("rb")
    except FileNotFoundError:
        raise TracekitError(path, "no such file") from None
    except OSError as exc:
        raise TracekitError(path, f"cannot read: {exc.strerror or exc}") from None
    with raw:
        try:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
        except OSError as exc:
            raise TracekitError(path, f"cannot read: {exc.strerror or exc}") from None
        stream: BinaryIO = igzip.IGzipFile(fileobj=raw) if gz else raw  # type: ignore[no-untyped-call,assignment]
        while True:
            try:
                block = stream.read(size)
            except _BAD_GZIP as exc:
                if not gz:
                    raise TracekitError(path, f"cannot read: {exc}") from None
                cause = "truncated gzip" if isinstance(exc, EOFError) else f"corrupt gzip ({exc})"
                raise TracekitError(path, cause) from None
            if not block:
                return
            yield block


def structure(
    buf: bytes, start: int, stop: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Structural bytes of ``buf[start:stop]`` outside strings (``start`` is outside one).

    Returns their absolute positions, their codes (+1 open, -1 close, 2 comma) and the depth
    after each one, relative to ``start``. A string left open at the end hides what follows.
    """
    stop = len(buf) if stop is None else min(stop, len(buf))
    a = np.frombuffer(buf, dtype=np.uint8, count=max(stop - start, 0), offset=min(start, stop))
    quotes = np.flatnonzero(a == _QUOTE)
    if len(quotes):
        maybe = quotes[quotes > 0]
        maybe = maybe[a[maybe - 1] == _BACKSLASH]
        escaped = [q for q in maybe.tolist() if _backslashes_before(buf, start + q, start) % 2]
        if escaped:
            quotes = np.setdiff1d(quotes, np.array(escaped, dtype=quotes.dtype))
    code = _DEPTH[a]
    where = np.flatnonzero(code)
    outside = np.searchsorted(quotes, where) % 2 == 0
    where = where[outside]
    code = code[where]
    depth = np.cumsum(np.where(code == 2, 0, code), dtype=np.int64)
    return where + start, code, depth


def _backslashes_before(buf: bytes, at: int, floor: int) -> int:
    k = at
    while k > floor and buf[k - 1] == _BACKSLASH:
        k -= 1
    return at - k


def _string_end(buf: bytes, pos: int) -> int | None:
    """Index after the string opening at ``pos``, or None if it goes past the buffer."""
    at = pos + 1
    while (close := buf.find(b'"', at)) >= 0:
        if _backslashes_before(buf, close, pos) % 2 == 0:
            return close + 1
        at = close + 1
    return None


class Reader:
    """A cursor over the document's text: ``buf[pos]`` is at byte ``base + pos`` of it."""

    def __init__(self, path: Path, block: int = BLOCK) -> None:
        self.path, self.block = path, block
        self._blocks = read_blocks(path, block)
        self.buf, self.pos, self.base, self.eof = b"", 0, 0, False

    # -- buffer ---------------------------------------------------------------------------

    def _more(self, at_least: int = 1) -> bool:
        """Append blocks until ``at_least`` new bytes came (or the end); False if none did."""
        parts, got = [self.buf[self.pos :]], 0
        self.base += self.pos
        self.pos = 0
        while got < at_least and not self.eof:
            block = next(self._blocks, None)
            if block is None:
                self.eof = True
                break
            parts.append(block)
            got += len(block)
        self.buf = b"".join(parts)
        return got > 0

    def peek(self) -> int:
        """The next byte after whitespace (not consumed), or -1 at the end of the text."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return -1

    def error(self, what: str, at: int | None = None) -> TracekitError:
        """A syntax error at ``at`` (default: the cursor); at the end, the text is cut short."""
        if what == "truncated" or (self.eof and self.pos >= len(self.buf)):
            return TracekitError(self.path, "invalid JSON (Input data was truncated)")
        where = self.base + (self.pos if at is None else at)
        return TracekitError(self.path, f"invalid JSON (JSON is malformed: {what} (byte {where}))")

    def end(self) -> None:
        """Only whitespace may follow the document."""
        if self.peek() >= 0:
            raise self.error("trailing characters")

    # -- values ---------------------------------------------------------------------------

    def value(self) -> bytes:
        """The text of the next whole JSON value (validated later, by whoever decodes it)."""
        first = self.peek()
        if first < 0:
            raise self.error("truncated")
        while (end := self._value_end(first)) is None:
            if self.eof:
                raise self.error("truncated")
            self._more(max(self.block, len(self.buf) - self.pos))  # grow geometrically
        if end == self.pos:
            raise self.error("invalid character")
        text = self.buf[self.pos : end]
        self.pos = end
        return text

    def _value_end(self, first: int) -> int | None:
        buf, pos = self.buf, self.pos
        if first == _QUOTE:
            return _string_end(buf, pos)
        if first in b"{[":  # scan a window, widened until the value ends in it
            window = 4096
            while True:
                where, _, depth = structure(buf, pos, pos + window)
                done = np.flatnonzero(depth == 0)
                if len(done):
                    return int(where[done[0]]) + 1
                if pos + window >= len(buf):
                    return None
                window *= 4
        match = _SCALAR_END.search(buf, pos)
        return match.start() if match else (len(buf) if self.eof else None)

    def members(self) -> Iterator[str]:
        """Keys of the object whose ``{`` is next; the caller reads each one's value."""
        self.pos += 1
        if (c := self.peek()) == ord("}"):
            self.pos += 1
            return
        while True:
            if c != _QUOTE:
                raise self.error("object keys must be strings")
            at = self.pos
            key = decode_text(self.path, _KEY, self.value(), self.base + at)
            if self.peek() != ord(":"):
                raise self.error("expected ':'")
            self.pos += 1
            yield key
            c = self.peek()
            if c == _COMMA:
                self.pos += 1
                c = self.peek()
                continue
            if c == ord("}"):
                self.pos += 1
                return
            raise self.error("expected ',' or '}'")

    # -- the big array --------------------------------------------------------------------

    def array(self, decoder: msgspec.json.Decoder[list[T]]) -> Iterator[tuple[list[T], bytes, int]]:
        """Decode the array whose ``[`` is next in chunks: (elements, ``[chunk]`` text, index)."""
        if self.peek() != ord("["):
            raise self.error("expected '['")
        self.pos += 1
        count, after_comma = 0, False
        while True:
            if len(self.buf) - self.pos < self.block and not self.eof:
                self._more(self.block)
            cut = self._guess()
            if cut is not None:
                chunk = b"[" + self.buf[self.pos : cut] + b"]"
                try:
                    items = decoder.decode(chunk)
                except (msgspec.DecodeError, UnicodeDecodeError):
                    pass
                else:
                    yield items, chunk, count
                    count += len(items)
                    self.pos, after_comma = cut + 1, True
                    continue
            end, closed = self._scan()
            if end is None:
                if self.eof:
                    raise self.error("truncated")
                self._more(max(self.block, len(self.buf) - self.pos))
                continue
            piece = self.buf[self.pos : end]
            if not piece.strip(b" \t\n\r"):
                if not closed or after_comma:
                    raise self.error("invalid character" if not closed else "trailing comma", end)
            else:
                chunk = b"[" + piece + b"]"
                at = self.base + self.pos - 1
                items = decode_text(self.path, decoder, chunk, at, "traceEvents", count)
                yield items, chunk, count
                count += len(items)
            self.pos, after_comma = end + 1, True
            if closed:
                return

    def _guess(self) -> int | None:
        """Position of the comma after the last ``}`` ``,`` ``{`` in the buffer, if any."""
        for lo in dict.fromkeys((max(self.pos, len(self.buf) - _TAIL), self.pos)):
            last = None
            for last in _CUT.finditer(self.buf, lo):  # noqa: B007 - the last one is wanted
                pass
            if last is not None:
                return last.start(1)
        return None

    def _scan(self) -> tuple[int | None, bool]:
        """(the array's closing ``]`` or its last top-level comma in the buffer, closed?)."""
        where, code, depth = structure(self.buf, self.pos)
        below = np.flatnonzero(depth < 0)
        if len(below):
            at = int(where[below[0]])
            if self.buf[at] != ord("]"):
                raise self.error("invalid character", at)
            return at, True
        commas = np.flatnonzero((code == 2) & (depth == 0))
        return (int(where[commas[-1]]), False) if len(commas) else (None, False)


def decode_text(
    path: Path,
    decoder: msgspec.json.Decoder[T],
    text: bytes,
    at: int = 0,
    field: str | None = None,
    index: int = 0,
) -> T:
    """Decode ``text``, found at byte ``at`` of the document as the value of key ``field``
    (for an array chunk: elements from ``index`` on); errors name the place in the document."""
    try:
        return decoder.decode(text)
    except msgspec.ValidationError as exc:
        raise TracekitError(
            path, f"not a valid Kineto trace ({_at(str(exc), field, index)})"
        ) from None
    except msgspec.DecodeError as exc:
        msg = _BYTE.sub(lambda m: f"(byte {int(m[1]) + at})", str(exc))
        raise TracekitError(path, f"invalid JSON ({msg})") from None
    except UnicodeDecodeError as exc:
        raise TracekitError(path, f"invalid JSON: bad UTF-8 at byte {exc.start + at}") from None


def _at(msg: str, field: str | None, index: int) -> str:
    """msgspec's path (``$``, ``$[3].ts``) as a path in the whole document."""
    if field is None:
        return msg
    if " - at `$" not in msg:
        return f"{msg} - at `$.{field}`"
    return _PATH.sub(
        lambda m: f"`$.{field}" + (f"[{int(m[1]) + index}]" if m[1] is not None else ""), msg
    )


class _Nothing(msgspec.Struct):
    pass


_SKIP = msgspec.json.Decoder(_Nothing)


def check_value(path: Path, text: bytes, at: int) -> None:
    """Validate the syntax of a value nobody needs, without building it."""
    decode_text(path, _SKIP, b'{"_":' + text + b"}", at - 5)
