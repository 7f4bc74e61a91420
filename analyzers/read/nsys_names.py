"""Names for Nsight Systems' enum codes: copy kinds and memory kinds (CUPTI's enums)."""

from __future__ import annotations

_COPY = ("Unknown", "HtoD", "DtoH", "HtoA", "AtoH", "AtoA", "AtoD", "DtoA", "DtoD", "HtoH", "PtoP")
_UVM = ("HtoD", "DtoH", "DtoD")  # 11-13: unified-memory migrations
_MEMORY = ("Pageable", "Pinned", "Device", "Array", "Managed", "Device Static", "Managed Static")


def _label(table: tuple[str, ...], index: int) -> str:
    return table[index] if 0 <= index < len(table) else "Unknown"


def memcpy_name(key: int) -> str:
    copy, rest = divmod(key, 1_000_000)
    src, dst = divmod(rest, 1000)
    where = f" ({_label(_MEMORY, src - 1)} -> {_label(_MEMORY, dst - 1)})" if src and dst else ""
    return f"Memcpy {_label(_COPY + _UVM, copy)}{where}"


def memory_label(kind: int) -> str:
    """A CUPTI memory kind's name (``Unknown`` outside the enum)."""
    return _label(_MEMORY, kind)
