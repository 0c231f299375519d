"""The house's rules, checked: small modules, no import cycles, every subpackage packaged, one public API."""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp

import run_mailbox

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 300
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FOLDERS = {name: ROOT / path for name, path in PYPROJECT["tool"]["setuptools"]["package-dir"].items()}


def package_modules() -> dict[str, Path]:
    """Every module of the package by its installed name (the mapped folders do not nest on disk)."""
    modules = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            modules[".".join((package, *parts))] = path
    return modules


def test_no_module_is_longer_than_about_300_lines():
    long = {
        name: n for name, path in package_modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_module_imports_another_that_imports_it_back():
    """No import cycles between the package's modules (a package imports its own submodules freely)."""
    graph = grimp.build_graph("run_mailbox")
    edges = {m: graph.find_modules_directly_imported_by(m) & graph.modules for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[set[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = set()
            while (popped := stack.pop()) != module:
                component.add(popped)
            component.add(module)
            packages_and_children = all(m.startswith(min(component, key=len)) for m in component)
            if len(component) > 1 and not packages_and_children:
                cycles.append(component)

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert cycles == []


def test_every_subpackage_is_in_the_packaged_list():
    packages = {name.removesuffix(".__init__") for name, p in package_modules().items() if p.name == "__init__.py"}
    assert packages == set(PYPROJECT["tool"]["setuptools"]["packages"])


def test_the_public_api_names_only_what_it_exports():
    assert sorted(run_mailbox.__all__) == sorted(set(run_mailbox.__all__))
    for name in run_mailbox.__all__:
        assert hasattr(run_mailbox, name), name
