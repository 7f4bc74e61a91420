"""Parallel layouts for ``tracekit sweep``: the spec, and how a command is made to run one.

Spec: layouts are separated by ``,`` or ``;``; one layout joins its degrees with ``+``::

    tp=1,tp=2,pp=2,dp=2      four layouts
    tp=2+pp=2; tp=4          two layouts: TP=2 × PP=2, and TP=4
    tp=2+ep                  TP=2 with expert parallelism (EP size = TP × DP in vLLM)

Keys are ``tp``, ``pp``, ``dp`` (integers ≥ 1) and ``ep`` (bare, or ``ep=N`` with N = TP × DP).
A degree left out is 1 and expert parallelism is off: a layout says everything it sets.

A command runs a layout in two ways, both applied where they can be:

* **argv**: vLLM's own options are rewritten wherever they appear (``--tensor-parallel-size``
  / ``-tp``, ``--pipeline-parallel-size`` / ``-pp``, ``--data-parallel-size`` / ``-dp``, as
  ``--opt N`` or ``--opt=N``, underscores accepted; ``--enable-expert-parallel`` / ``-ep`` /
  ``--no-enable-expert-parallel``). For the vLLM CLI's engine commands (``vllm serve``,
  ``vllm run-batch``, ``vllm bench latency|throughput|startup``) the options a layout needs
  are appended when absent;
* **the plugin** (any other command, e.g. a Python script using ``vllm.LLM``): the layout goes
  to the vLLM plugin in ``TRACEKIT_LAYOUT``, which sets it on vLLM's ``EngineArgs`` before the
  engine configuration is built (``collectors.vllm_plugin``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from tracekit.core.errors import TracekitError
from tracekit.core.layout import Layout

KEYS: Final = ("tp", "pp", "dp")
#: vLLM's option per degree (canonical spelling first).
OPTIONS: Final[dict[str, tuple[str, ...]]] = {
    "tp": ("--tensor-parallel-size", "-tp"),
    "pp": ("--pipeline-parallel-size", "-pp"),
    "dp": ("--data-parallel-size", "-dp"),
}
EP_ON: Final = ("--enable-expert-parallel", "-ep")
EP_OFF: Final = "--no-enable-expert-parallel"
#: vLLM CLI subcommands that build an engine from engine arguments.
ENGINE_COMMANDS: Final = ("serve", "run-batch")
ENGINE_BENCHES: Final = ("latency", "throughput", "startup")
_SEPARATORS = re.compile(r"[,;]")


def parse_layout(item: str) -> Layout:
    """One layout (``tp=2+pp=2``); a TracekitError names the part that is wrong."""
    text = item.strip()
    if not text:
        raise TracekitError(None, "empty layout in --layouts")
    degrees: dict[str, int] = {}
    ep: int | None = None  # 0: bare "ep"
    for raw in text.split("+"):
        part = raw.strip().lower()
        key, sep, value = (s.strip() for s in part.partition("="))
        if key not in (*KEYS, "ep"):
            raise TracekitError(
                None, f"layout {text!r}: unknown part {raw.strip()!r} (use tp=N, pp=N, dp=N, ep)"
            )
        if key in degrees or (key == "ep" and ep is not None):
            raise TracekitError(None, f"layout {text!r}: {key} given twice")
        if key == "ep" and not sep:
            ep = 0
            continue
        if not re.fullmatch(r"\d+", value) or int(value) < 1:
            raise TracekitError(
                None, f"layout {text!r}: {key} needs a whole number ≥ 1, got {value!r}"
            )
        if key == "ep":
            ep = int(value)
        else:
            degrees[key] = int(value)
    layout = Layout.of(**degrees, experts=ep is not None)
    if ep is not None and layout.tp * layout.dp == 1:
        raise TracekitError(
            None, f"layout {text!r}: expert parallelism needs tp × dp > 1 (vLLM's EP size)"
        )
    if ep and ep != layout.tp * layout.dp:
        raise TracekitError(
            None,
            f"layout {text!r}: vLLM's expert-parallel size is tp × dp = "
            f"{layout.tp * layout.dp}, not {ep} (write ep alone)",
        )
    return layout


def parse_layouts(spec: str) -> list[Layout]:
    """Layouts separated by ``,`` or ``;``; each at most once."""
    layouts = [parse_layout(item) for item in _SEPARATORS.split(spec)]
    seen: set[Layout] = set()
    for layout in layouts:
        if layout in seen:
            raise TracekitError(None, f"layout {layout.spec} is given twice in --layouts")
        seen.add(layout)
    return layouts


# --- argv ------------------------------------------------------------------------------------


def _option_name(token: str) -> tuple[str, str | None]:
    """``--tensor_parallel_size=2`` → (``--tensor-parallel-size``, ``2``)."""
    name, sep, value = token.partition("=")
    if name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")
    return name, value if sep else None


def engine_command(argv: list[str]) -> str | None:
    """The vLLM CLI engine subcommand argv runs (``serve``, ``bench throughput``), else None.

    The CLI is a program or module whose name contains ``vllm`` (``vllm``, ``python -m
    vllm.entrypoints.cli.main``, a shim such as ``vllm_cli.py``) followed by the subcommand.
    """
    for i in range(1, len(argv)):
        if "vllm" not in Path(argv[i - 1]).name.lower():
            continue
        if argv[i] in ENGINE_COMMANDS:
            return argv[i]
        if argv[i] == "bench" and i + 1 < len(argv) and argv[i + 1] in ENGINE_BENCHES:
            return f"bench {argv[i + 1]}"
    return None


def rewrite_argv(argv: list[str], layout: Layout) -> list[str]:
    """argv with vLLM's parallelism options set to ``layout`` (see the module docstring)."""
    by_name = {name: key for key, names in OPTIONS.items() for name in names}
    out: list[str] = []
    present: set[str] = set()
    ep_on = False
    i = 0
    while i < len(argv):
        token = argv[i]
        name, value = _option_name(token)
        if name in by_name:
            key = by_name[name]
            present.add(key)
            if value is None:
                if i + 1 >= len(argv):
                    raise TracekitError(None, f"{token} has no value in the command")
                out += [token, str(getattr(layout, key))]
                i += 2
                continue
            out.append(f"{token.partition('=')[0]}={getattr(layout, key)}")
        elif name in (*EP_ON, EP_OFF) and value is None:
            if layout.experts and not ep_on:  # once; "--no-…" turns into "--enable-…"
                out.append(token if name in EP_ON else EP_ON[0])
                ep_on = True
            elif not layout.experts and name == EP_OFF:
                out.append(token)
        else:
            out.append(token)
        i += 1
    if engine_command(argv) is not None:
        for key in KEYS:
            if key not in present and getattr(layout, key) != 1:
                out += [OPTIONS[key][0], str(getattr(layout, key))]
        if layout.experts and not ep_on:
            out.append(EP_ON[0])
    return out


def needs_plugin(argv: list[str]) -> bool:
    """Whether the layout must also reach vLLM through the plugin (not a vLLM CLI command)."""
    return engine_command(argv) is None
