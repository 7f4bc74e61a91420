"""What every versioned JSON result shares (the Analysis, the plan): its schema_version read
before the body, a one-line error for the wrong kind or version, and the published schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import msgspec

from tracekit.core.errors import TracekitError

T = TypeVar("T")
SCHEMA_DIR = Path(__file__).parents[1] / "schema"


def decode(
    data: bytes, decoder: msgspec.json.Decoder[T], what: str, version: int, where: str | None
) -> T:
    """``data`` as ``decoder``'s type when its ``schema_version`` is ``version``; else a
    TracekitError naming ``where`` and what is wrong (``what``: "analysis", "plan")."""
    try:
        found = msgspec.json.decode(data, type=dict[str, Any]).get("schema_version")
    except msgspec.DecodeError as exc:
        raise TracekitError(where, f"not a {what} JSON ({exc})") from None
    if found != version:
        raise TracekitError(
            where, f"{what} schema_version {found!r}; this tracekit reads version {version}"
        )
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise TracekitError(where, f"{what} JSON does not match schema ({exc})") from None


def json_schema(kind: type, title: str) -> dict[str, Any]:
    schema = msgspec.json.schema(kind)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    return schema


def write_schema(schema: dict[str, Any], name: str) -> Path:
    """Write a published schema file (``tracekit/schema/NAME``); the tests compare them."""
    out = SCHEMA_DIR / name
    out.write_bytes(msgspec.json.format(msgspec.json.encode(schema), indent=2) + b"\n")
    return out
