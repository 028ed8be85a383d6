"""The import graph of our packages points one way: no cycles, objectives/search_spaces never import nas
nor each other, and only the CLI imports ``nas.cli``.

The graph is read from the source with ``ast`` (module-level and function-local imports alike, relative
imports resolved), so an import hidden inside a function to break a cycle is still an arrow here.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nas", "search_spaces", "objectives")
# Modules that may import nas.cli: the entry point (``python -m nas``) and the CLI itself.
CLI_MODULES = {"nas.cli", "nas.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name ``module`` imports anywhere in its source; ``from X import Y`` gives ``X.Y``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module of ours that ``name`` comes from: its longest prefix that is one of our modules.

    ``X.Y`` of ``from X import Y`` is the submodule ``X.Y`` when there is one, else the package ``X``; the parent
    packages Python imports on the way are left out (every submodule would otherwise point back at its package).
    """
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports."""
    modules = our_modules()
    graph = {}
    for module, path in modules.items():
        targets = {resolve(name, modules) for name in imported_names(module, path)}
        graph[module] = {target for target in targets if target and target != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module], stack[len(stack):] = "open", [module]
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


GRAPH = import_graph()


def package_of(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_is_read_from_every_module_with_local_and_relative_imports():
    """The walker sees what it must: relative imports, function-local imports, our three packages."""
    assert {package_of(module) for module in GRAPH} == set(PACKAGES)
    assert "nas.schema" in GRAPH["nas.config"]  # from .schema import ...
    assert "nas.worker" in GRAPH["nas.commands.search"]  # from ..worker import ... inside the handler
    assert "objectives.ood_sets" in GRAPH["objectives.ood"]  # from . import ood_sets


def test_find_cycle_reports_a_cycle_hidden_in_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("package, forbidden", [
    ("objectives", {"nas", "search_spaces"}),
    ("search_spaces", {"nas", "objectives"}),
])
def test_model_and_objective_packages_stay_independent(package, forbidden):
    """``nas`` imports search_spaces and objectives, never the other way round; the two never import each other."""
    wrong = sorted(f"{module} -> {target}" for module, targets in GRAPH.items() if package_of(module) == package
                   for target in targets if package_of(target) in forbidden)
    assert not wrong, "\n".join(wrong)


def test_only_the_cli_imports_the_cli():
    wrong = sorted(module for module, targets in GRAPH.items() if "nas.cli" in targets and module not in CLI_MODULES)
    assert not wrong, f"library modules import nas.cli (move shared argparse helpers to nas.cli_types): {wrong}"


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for target in GRAPH.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@pytest.mark.parametrize("module, below", [
    ("nas.schema", {"nas.config", "nas.recipe", "nas.requirements"}),
    ("nas.recipe", {"nas.config"}),
    ("nas.training", {"nas.config", "nas.recipe", "nas.schema"}),
    ("nas.robust_training", {"nas.config", "nas.recipe", "nas.schema"}),
])
def test_layers_point_one_way(module, below):
    """The schema is a leaf, the recipe sits under the config, the training loop and losses know no config."""
    assert not reachable(module) & below, f"{module} reaches {sorted(reachable(module) & below)}"
