"""The package's modules import each other one way: no import circle (issue 28). Read from the
source text, so every import counts, at the top of a module or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = "simple_keypoint"


def module_files(root: Path = REPO) -> dict[str, Path]:
    """Module name -> file, for every module of the package (a package by its __init__.py)."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its text. Its own ancestor packages
    are left out: Python runs a package's __init__ before any of its modules, so importing a name
    from it (``from simple_keypoint import __version__``) orders nothing."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in found if m in modules and m != name and m not in ancestors}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk meets, each as the modules along it (first repeated last)."""
    cycles, state, path = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def package_graph(root: Path = REPO) -> dict[str, set[str]]:
    modules = module_files(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def test_the_package_has_no_import_circle() -> None:
    graph = package_graph()
    assert len(graph) > 20 and graph["simple_keypoint.detect"]  # the walk found the package and its imports
    cycles = import_cycles(graph)
    assert not cycles, "import circle(s): " + "; ".join(" -> ".join(c) for c in cycles)


def test_track_builds_on_detect_never_the_other_way() -> None:
    graph = package_graph()
    assert "simple_keypoint.detect" in graph["simple_keypoint.track"]
    assert "simple_keypoint.sources" in graph["simple_keypoint.detect"]

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph[node])
        return False

    assert not reaches("simple_keypoint.detect", "simple_keypoint.track")
    assert not reaches("simple_keypoint.sources", "simple_keypoint.detect")


def test_the_walk_sees_a_circle(tmp_path: Path) -> None:
    """The check can fail: two modules importing each other (one inside a function, one relatively) are found."""
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("from simple_keypoint import b\n")  # an ancestor import: no circle
    (package / "a.py").write_text("from simple_keypoint import __version__\nfrom .b import thing\n")
    (package / "b.py").write_text("def f():\n    import simple_keypoint.a\n")
    (cycle,) = import_cycles(package_graph(tmp_path))
    assert sorted(cycle[:-1]) == ["simple_keypoint.a", "simple_keypoint.b"] and cycle[0] == cycle[-1]
