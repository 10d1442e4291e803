"""The layer rule of docs/LAYERS.md, checked on the source itself.

Every module under src/flyllm belongs to one layer; a module may import only from its own layer
or the layers before it in ``LAYERS``. The walk reads the source with ``ast``, so it sees imports
inside functions and under ``TYPE_CHECKING`` too: a lazy import is still a dependency, it only
hides it. The one kind of upward import allowed is a thin lazy wrapper, listed by name in
``LAZY_UPWARD``. Module-level imports (those run on import) must also form no cycle.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import flyllm

ROOT = Path(flyllm.__file__).parent

# Bottom first: a module may import from its own layer and the ones above it in this list.
# A name covers the module and, for a package, everything under it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "values",
        (
            "flyllm.types",
            "flyllm.errors",
            "flyllm._display",
            "flyllm._wire",
            "flyllm.params",
            "flyllm._schema",
            "flyllm._output",
            "flyllm._tasks",
        ),
    ),
    ("translators", ("flyllm.providers", "flyllm.pricing")),
    ("I/O", ("flyllm._transport", "flyllm._images")),
    ("observability", ("flyllm.observe",)),
    ("routing", ("flyllm.routing", "flyllm._toolplan")),
    ("engine", ("flyllm._engine", "flyllm._embed")),
    (
        "API",
        (
            "flyllm.manager",
            "flyllm.streaming",
            "flyllm.usage",
            "flyllm.discovery",
            "flyllm._toolloop",
        ),
    ),
    ("config", ("flyllm.config",)),
    ("server", ("flyllm.server",)),
    ("cli", ("flyllm.cli", "flyllm.__main__")),
]
# The facade and the modules kept for one release under their old names: they re-export only,
# and nothing inside the library may import them.
TOP = ("flyllm", "flyllm.events", "flyllm.metrics", "flyllm.journal", "flyllm.strategies",
       "flyllm.state", "flyllm.redis_state")  # fmt: skip
# The emulator stands apart: an independent implementation of the wire formats, so it may use
# only the value layer of the client, and only the CLI (``flyllm emulate``, the demo) uses it.
EMULATOR = "flyllm.emulator"
EMULATOR_MAY_IMPORT = ("values",)
EMULATOR_USED_BY = ("flyllm.cli",)

# Layers that stand on the values alone: the transport knows no provider, and observability
# sits low so routing and the engine can emit events.
VALUES_ONLY = ("flyllm._transport", "flyllm.observe")

# (importer, imported, why): the only upward imports, each a thin wrapper importing inside
# the function (or for its return annotation) so the class method stays where users call it.
LAZY_UPWARD = {
    ("flyllm.manager", "flyllm.config.builder"): "LlmManager.builder()",
    ("flyllm.manager", "flyllm.config.loader"): "LlmManager.from_config()",
}


@dataclass(frozen=True, slots=True)
class Edge:
    """One import: ``importer`` imports ``imported``; ``runtime`` when it runs on import."""

    importer: str
    imported: str
    line: int
    runtime: bool


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, runtime: bool = True) -> Iterator[tuple[ast.AST, bool]]:
    """Every import node with whether it runs on import (not in a function, not TYPE_CHECKING)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, runtime
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _imports(child, False)
        elif isinstance(child, ast.If) and _is_type_checking(child):
            for stmt in child.body:
                yield from _imports(ast.Module(body=[stmt], type_ignores=[]), False)
            for stmt in child.orelse:
                yield from _imports(ast.Module(body=[stmt], type_ignores=[]), runtime)
        else:
            yield from _imports(child, runtime)


def _targets(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:  # relative: resolve against the importing package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    # ``from pkg import mod`` imports the submodule; ``from mod import name`` the module
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


@functools.cache
def _edges() -> tuple[Edge, ...]:
    modules = _modules()
    known = set(modules)
    edges = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        for node, runtime in _imports(tree):
            for target in _targets(node, name, is_package, known):
                if target == "flyllm" or target.startswith("flyllm."):
                    edges.append(Edge(name, target, getattr(node, "lineno", 0), runtime))
    return tuple(edges)


def _covers(prefix: str, module: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> tuple[int, str] | None:
    """The layer's index and name, (-1, "emulator") or (len, "top"); None when unplaced."""
    if _covers(EMULATOR, module):
        return -1, "emulator"
    if module in TOP:
        return len(LAYERS), "top"
    for index, (layer, prefixes) in enumerate(LAYERS):
        if any(_covers(p, module) for p in prefixes):
            return index, layer
    return None


def _problem(edge: Edge) -> str | None:
    source, target = layer_of(edge.importer), layer_of(edge.imported)
    assert source is not None and target is not None
    where = f"{edge.importer} (layer {source[1]}) imports {edge.imported} (layer {target[1]})"
    where += f" at line {edge.line}"
    if target[1] == "top" and edge.importer != "flyllm" and edge.imported not in TOP[1:]:
        return where + ": import the module that defines the name, not the facade"
    if target[1] == "top" and edge.imported in TOP[1:]:
        return where + ": that module is kept for users only; import its new home"
    if source[1] == "emulator":
        ok = target[1] == "emulator" or target[1] in EMULATOR_MAY_IMPORT
        return None if ok else where + ": the emulator may use only the value layer"
    if target[1] == "emulator":
        ok = source[1] == "top" or any(_covers(p, edge.importer) for p in EMULATOR_USED_BY)
        return None if ok else where + ": only the CLI may use the emulator"
    lean = any(_covers(p, edge.importer) for p in VALUES_ONLY)
    if lean and target[1] not in ("values", source[1]):
        return where + ": this layer may use only the value layer"
    if target[0] > source[0] and (edge.importer, edge.imported) not in LAZY_UPWARD:
        return where + ": an upward import"
    return None


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in _modules() if layer_of(m) is None]
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"


def test_imports_go_one_way() -> None:
    test_every_module_has_a_layer()
    problems = [p for e in _edges() if (p := _problem(e))]
    assert not problems, "\n".join(problems)


def test_the_lazy_upward_imports_stay_lazy() -> None:
    """An allowed upward import never runs on import: it would close a cycle."""
    used = {(e.importer, e.imported) for e in _edges()}
    assert set(LAZY_UPWARD) <= used, "an exception no longer needed: remove it from LAZY_UPWARD"
    eager = [e for e in _edges() if (e.importer, e.imported) in LAZY_UPWARD and e.runtime]
    assert not eager, eager


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for edge in _edges():
        if edge.runtime and edge.imported != edge.importer:
            graph.setdefault(edge.importer, set()).add(edge.imported)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checker_catches_what_it_should() -> None:
    """The rule fails on an upward import, a use of the emulator and a cycle (no test that
    cannot fail)."""
    assert _problem(Edge("flyllm.routing.state", "flyllm.manager", 1, False))
    assert _problem(Edge("flyllm.observe.events", "flyllm.routing.instance", 1, True))
    assert _problem(Edge("flyllm.manager", "flyllm.emulator", 1, False))
    assert _problem(Edge("flyllm.emulator.server", "flyllm.providers.openai", 1, True))
    assert _problem(Edge("flyllm.routing.state", "flyllm.strategies", 1, True))
    assert _problem(Edge("flyllm.manager", "flyllm", 1, True))
    assert _problem(Edge("flyllm._transport", "flyllm.providers.base", 1, True))
    assert _problem(Edge("flyllm.observe.journal", "flyllm.pricing", 1, True))
    assert _problem(Edge("flyllm.routing.state", "flyllm.types", 1, True)) is None
    assert _problem(Edge("flyllm.cli.demo", "flyllm.emulator", 1, True)) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None
