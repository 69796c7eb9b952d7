"""The packages' layers (README, "Layout of the code"): each imports only the packages below it.

Every import counts, at the top of a module or inside a function: a lazy import is still a
dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# package -> the project packages it may import; the model library (models/) sits below
# training, evaluation, tagging and the Python API, and the API imports no evaluation code.
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "stylize": {"common"},
    "shards": {"common"},
    "world": {"common", "shards"},
    "models": {"common", "shards", "stylize"},
    "train": {"common", "shards", "stylize", "models"},
    "tagging": {"common", "models"},
    "stylecode": {"common", "shards", "models", "tagging"},
    "evaluation": {"common", "shards", "stylize", "models", "tagging", "stylecode"},
    "serve": {"common", "shards", "models", "tagging", "stylecode", "evaluation"},
}
PACKAGES = {*ALLOWED, "pipeline"}   # pipeline/ drives them all


def imported_packages(path: Path) -> set[str]:
    """The project packages a module imports (absolute imports; the project uses no others)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PACKAGES


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package):
    wrong = {f"{path.relative_to(REPO)}: {', '.join(sorted(bad))}"
             for path in sorted((REPO / package).rglob("*.py"))
             if (bad := imported_packages(path) - ALLOWED[package] - {package})}
    assert not wrong, f"{package}/ may import only {sorted(ALLOWED[package])}; found {sorted(wrong)}"


def test_every_package_has_a_layer():
    on_disk = {path.parent.name for path in REPO.glob("*/__init__.py")}
    assert on_disk == PACKAGES
