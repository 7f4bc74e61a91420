"""The house's layers (DESIGN.md, docs/architecture.md), read from the code's own imports.

Every import counts, lazy ones inside functions and TYPE_CHECKING ones too:

* the core (``tracekit.core``) imports nothing of tracekit's but the core;
* ``analyzers`` and ``collectors`` import the core and themselves, never each other and never
  a front end (the rest of ``tracekit``);
* no two modules import each other, directly or round a circle;
* ``analyzers/`` holds packages by stage, no module at its top level; one ``Layout`` class and
  one CLI guard.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("tracekit", "analyzers", "collectors")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Each tracekit module ``name`` imports, with the line (``from a import b``: ``a.b`` where
    that is a module, else ``a``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else base), node.lineno


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        graph[name] = {
            target for target, _ in _imports(name, path) if target in MODULES and target != name
        }
    return graph


def _layer(module: str) -> str:
    top = module.split(".", maxsplit=1)[0]
    if top == "tracekit":
        return "core" if module.startswith("tracekit.core") else "front end"
    return top


ALLOWED = {
    "core": {"core"},
    "analyzers": {"core", "analyzers"},
    "collectors": {"core", "collectors"},
    "front end": {"core", "analyzers", "collectors", "front end"},
}


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert {"tracekit.core.analysis", "analyzers.engine.driver", "collectors.capture"} <= set(graph)
    assert "tracekit.core.analysis" in graph["analyzers.engine.driver"]
    assert "analyzers.engine.driver" in graph["tracekit.cli"]  # a lazy import, inside a function


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_go_downward_only(layer: str) -> None:
    wrong = []
    for name, path in MODULES.items():
        if _layer(name) != layer:
            continue
        for target, line in _imports(name, path):
            if target.split(".")[0] in PACKAGES and _layer(target) not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_round_a_circle() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_analyzers_top_level_holds_packages_only() -> None:
    top = sorted(p.name for p in (REPO / "analyzers").glob("*.py"))
    assert top == ["__init__.py"]
    stages = {p.name for p in (REPO / "analyzers").iterdir() if (p / "__init__.py").exists()}
    assert stages == {"read", "rank", "run", "planning", "engine"}


@pytest.mark.parametrize(("definition", "home"), [
    ("class Layout", "tracekit/core/layout.py"),
    ("def guarded", "tracekit/cli_common.py"),
])  # fmt: skip
def test_defined_once(definition: str, home: str) -> None:
    kind, name = definition.split()
    node_type = ast.ClassDef if kind == "class" else ast.FunctionDef
    found = [
        str(path.relative_to(REPO))
        for path in MODULES.values()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, node_type) and node.name.lstrip("_") == name
    ]
    assert found == [home]


def test_every_package_has_a_map() -> None:
    """Each package's __init__ says what its modules are (docs/architecture.md has the rest)."""
    for name, path in MODULES.items():
        if path.name == "__init__.py" and name.count(".") <= 1 and name != "tracekit.schema":
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert len(doc.splitlines()) >= 3, f"{path.relative_to(REPO)}: no map"
