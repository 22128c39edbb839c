"""The package's import graph, read statically with ``ast``: no cycles, and a Hub layer that knows no models.

Edges: every ``import`` / ``from ... import`` of a taghead module, at module level and inside functions
and classes alike (a lazy import hides a cycle, it does not remove it). Imports under
``if TYPE_CHECKING:`` are left out: they never run. ``from .x import y`` is an edge to ``taghead.x.y`` when
that is a submodule, else to ``taghead.x`` (its ``__init__``); ``import taghead.x.y`` is an edge to
``taghead.x.y``. Python runs a package's ``__init__`` before any of its submodules, but that implicit step
is not an edge; an explicit import of a package (``from . import zoo`` in ``models/__init__``, ``from ..models
import x``) is one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "taghead"


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """``dotted name -> (file, is a package __init__)`` for every ``.py`` file under the package ``root``."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree`` (functions and classes included), except under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """``module -> the package modules it imports`` (see the module docstring for what counts)."""
    modules = _modules(root)
    top = root.name
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in modules}
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != top and not target.startswith(top + "."):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                graph[name].add(sub if sub in modules else target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]``, or ``None`` when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and "taghead.models.zoo" in graph["taghead.models"]  # the graph is really read
    assert "taghead.backbones.r2plus1d" in graph["taghead.backbones.registry"]  # imported inside a function
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_hub_layer_imports_no_heads_or_models():
    graph = import_graph(PACKAGE)
    below = _reachable(graph, "taghead.hub")
    assert not {m for m in below if m.startswith(("taghead.heads", "taghead.models"))}, sorted(below)
    # And the layers above it: heads build heads without models; the models sit on top of both.
    assert not {m for m in _reachable(graph, "taghead.heads") if m.startswith("taghead.models")}
    assert "taghead.hub" in _reachable(graph, "taghead.models.classifier")


@pytest.fixture
def fake_package(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("from . import b\n")
    (root / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import b\n")
    (root / "sub" / "b.py").write_text("def f():\n    from ..a import x\n    return x\n")
    return root


def test_the_checker_sees_function_level_imports_and_skips_type_checking(fake_package: Path):
    graph = import_graph(fake_package)
    assert graph == {"pkg": set(), "pkg.a": set(), "pkg.sub": {"pkg.sub.b"}, "pkg.sub.b": {"pkg.a"}}
    assert find_cycle(graph) is None
    (fake_package / "a.py").write_text("import pkg.sub.b\n")  # a runtime import closes the circle
    cycle = find_cycle(import_graph(fake_package))
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"pkg.a", "pkg.sub.b"}
