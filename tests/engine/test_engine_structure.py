"""The engine's shape: imports at module level only, no import cycles, no oversized modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "learning" / "engine"
PACKAGE = "learning.engine"
MAX_LINES = 400
SIZE_CHECKED = ("learning", "tasks_app", "kbsite", "benchmarks")

Graph = Mapping[str, set[str]]


# ------------------------------------------------------------------------------ the scanners


def imports_inside_functions(source: str) -> list[int]:
    """Line numbers of the ``import`` / ``from ... import`` statements inside a function or method body."""
    lines: list[int] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                lines.append(child.lineno)
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse(source), False)
    return sorted(lines)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements run when the module is imported: not function bodies, not ``if TYPE_CHECKING:``."""
    for node in body:
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_time_statements(node.orelse)
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from _import_time_statements(getattr(node, field, []))


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def module_imports(module: str, source: str, known: set[str], *, is_package: bool = False) -> set[str]:
    """The modules of ``known`` that importing ``module`` (with ``source``) runs.

    ``from a.b import c`` counts as ``a.b.c`` when that is a module, else as ``a.b``. Importing
    ``a.b.c`` also runs the ``__init__`` of ``a.b`` (and ``a``), so those count too, except the
    packages that contain ``module`` itself: Python runs them before ``module`` anyway, and a
    package's own ``__init__`` may import its submodules. Naming such a package explicitly
    (``from a.b import name`` inside ``a.b.c``) is an edge like any other.
    """
    package = module if is_package else module.rpartition(".")[0]
    own_packages = {*_ancestors(module), module}
    targets: set[str] = set()
    for node in _import_time_statements(ast.parse(source).body):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        else:
            continue
        for name in names:
            if name in known and name != module:
                targets.add(name)
            targets.update(p for p in _ancestors(name) if p in known and p not in own_packages)
    return targets


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def _engine_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(ENGINE.rglob("*.py")):
        parts = path.relative_to(ENGINE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((PACKAGE, *parts))] = path
    return modules


def engine_import_graph() -> dict[str, set[str]]:
    """``learning.engine`` module -> the engine modules its import runs (see :func:`module_imports`)."""
    modules = _engine_modules()
    known = set(modules)
    return {
        name: module_imports(name, path.read_text(), known, is_package=path.name == "__init__.py")
        for name, path in modules.items()
    }


# ------------------------------------------------------------------------- the scanners work


def test_the_scanner_finds_imports_in_functions_and_methods_only():
    # given imports at module level, under TYPE_CHECKING, in a function, a nested block and a method
    source = (
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import numpy\n"
        "def f():\n    import json\n    if True:\n        from math import pi\n"
        "class C:\n    import re\n    def m(self):\n        from learning.engine import nets\n"
        "async def g():\n    import sys\n"
    )
    # when scanned / then only the ones inside function bodies are reported
    assert imports_inside_functions(source) == [6, 8, 12, 14]


def test_the_graph_resolves_submodules_and_the_packages_an_import_runs():
    # given a package whose __init__ imports its plugin, which imports a sibling and an outside module
    known = {"e", "e.pkg", "e.pkg.reg", "e.pkg.plugin", "e.low", "e.high"}
    plugin = "from e.pkg.reg import register\nfrom e.low import thing\n"
    init = "from e.pkg import plugin\nfrom e.pkg.reg import register\n"
    high = "from e.pkg.reg import lookup\nif TYPE_CHECKING:\n    from e.pkg import plugin\n"
    # when resolved / then submodules are named, and an outside import also runs the package
    assert module_imports("e.pkg.plugin", plugin, known) == {"e.pkg.reg", "e.low"}
    assert module_imports("e.pkg", init, known, is_package=True) == {"e.pkg.plugin", "e.pkg.reg"}
    assert module_imports("e.high", high, known) == {"e.pkg.reg", "e.pkg"}
    # and a plugin that imports from its own package's __init__ is an edge back to it
    assert module_imports("e.pkg.plugin", "from e.pkg import register\n", known) == {"e.pkg"}


def test_the_cycle_finder_names_the_cycle():
    # given graphs with and without a cycle / when searched / then the cycle is named in order
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    # and one through a package __init__ (an outside module that a plugin imports) is found too
    known = {"e.pkg", "e.pkg.plugin", "e.pkg.reg", "e.eval"}
    graph = {
        "e.pkg": module_imports("e.pkg", "from e.pkg import plugin\n", known, is_package=True),
        "e.pkg.plugin": module_imports("e.pkg.plugin", "from e.eval import score\n", known),
        "e.pkg.reg": set(),
        "e.eval": module_imports("e.eval", "from e.pkg.reg import lookup\n", known),
    }
    assert find_cycle(graph) == ["e.eval", "e.pkg", "e.pkg.plugin", "e.eval"]


# ----------------------------------------------------------------------------- the engine


def test_no_engine_module_imports_inside_a_function():
    # given every .py under learning/engine / when scanned
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) >= 20
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in files
        for line in imports_inside_functions(path.read_text())
    ]
    # then every import is at module level
    assert offenders == [], "imports inside functions: " + ", ".join(offenders)


def test_the_engine_modules_import_each_other_without_a_cycle():
    # given the import graph of the engine's modules
    graph = engine_import_graph()
    assert "learning.engine.algorithms.maml" in graph["learning.engine.algorithms"]
    assert "learning.engine.algorithms" in graph["learning.engine.evaluation"]
    # when searched for a cycle / then there is none
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_source_module_is_over_400_lines():
    # given the non-test, non-migration modules of the project
    files = [
        path
        for top in SIZE_CHECKED
        for path in sorted((ROOT / top).rglob("*.py"))
        if not {"migrations", "tests"} & set(path.relative_to(ROOT).parts)
        # hidden folders hold installed packages (the peer benchmarks' .venv), not our code
        and not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
        and not path.name.startswith("test_")
    ]
    assert len(files) >= 50
    # when their lines are counted / then none is over the limit
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in files}
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert too_long == {}, f"modules over {MAX_LINES} lines: {too_long}"
