"""A Hugging Face model id (``meta-llama/Llama-3.1-8B-Instruct``) found in the local hub cache.

Only ``config.json`` is read, never downloaded: the cache is ``HF_HUB_CACHE``, else
``HF_HOME/hub``, else ``~/.cache/huggingface/hub``; a model lives in
``models--ORG--NAME/snapshots/REVISION/config.json``. The revision ``refs/main`` names is
taken where it holds a config, else the newest snapshot that does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tracekit.core.errors import TracekitError

_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_dir() -> Path:
    hub = os.environ.get("HF_HUB_CACHE")
    if hub:
        return Path(hub)
    home = os.environ.get("HF_HOME")
    return Path(home) / "hub" if home else Path.home() / ".cache" / "huggingface" / "hub"


def looks_like_id(text: str) -> bool:
    return bool(_ID.match(text)) and not Path(text).exists()


def config_path(model_id: str) -> Path:
    """``config.json`` of ``model_id`` in the cache; a one-line TracekitError if it is not."""
    root = cache_dir()
    folder = root / ("models--" + model_id.replace("/", "--"))
    snapshots = folder / "snapshots"
    ref = folder / "refs" / "main"
    candidates: list[Path] = []
    if ref.is_file():
        candidates.append(snapshots / ref.read_text().strip() / "config.json")
    if snapshots.is_dir():
        found = [p / "config.json" for p in snapshots.iterdir() if (p / "config.json").is_file()]
        candidates += sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        if path.is_file():
            return path
    raise TracekitError(
        None,
        f"model {model_id!r} has no config.json in the local Hugging Face cache ({root}); "
        f"tracekit never downloads: fetch it (huggingface-cli download {model_id} "
        "config.json) or pass --model PATH/TO/config.json",
    )
