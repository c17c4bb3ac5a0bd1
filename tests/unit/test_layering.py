"""The package's layering: the store imports neither files nor MapReduce, and no module imports itself back.

Every import counts, also those inside functions (a lazy import hides a cycle, it does not remove it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import dynamr

ROOT = Path(dynamr.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """module -> the dynamr modules it imports (a ``from package import name`` counts as the submodule
    when ``name`` is one)."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                       for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: no import at run time
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("dynamr"))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dynamr"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_the_store_imports_neither_files_nor_mapreduce() -> None:
    graph = imports()
    bad = {(a, b) for a, deps in graph.items() if a.startswith("dynamr.store")
           for b in deps if not b.startswith(("dynamr.store", "dynamr.rpc", "dynamr.errors", "dynamr.config"))}
    assert not bad, sorted(bad)


def test_files_do_not_import_mapreduce() -> None:
    graph = imports()
    bad = {(a, b) for a, deps in graph.items() if a.startswith("dynamr.files") for b in deps
           if b.startswith(("dynamr.mapreduce", "dynamr.cli", "dynamr.daemons"))}
    assert not bad, sorted(bad)


def test_no_import_cycles() -> None:
    graph = imports()
    # a package's __init__ is imported before its submodules anyway: only its explicit imports are edges
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep):], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, cycles[:5]
