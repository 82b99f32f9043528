"""Imports point one way: domain <- projections <- adapters <- scripts; only adapters touch drivers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["domain", "projections", "adapters"]
DRIVERS = {"psycopg", "psycopg_pool", "sqlite3"}


def imported_modules(path: Path) -> set[str]:
    return modules_imported_by(path.read_text(), str(path))


def modules_imported_by(source: str, filename: str = "<source>") -> set[str]:
    tree = ast.parse(source, filename=filename)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.add("." * node.level + (node.module or ""))  # relative: reported, the rule wants absolute
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_inward(layer: str) -> None:
    """No module imports a layer outside its own or those before it; domain and projections import no driver."""
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    forbidden = {f"itertrack.{other}" for other in LAYERS if other not in allowed}
    offenders = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
            if layer != "adapters" and top in DRIVERS:
                offenders.append(f"{path.relative_to(ROOT)} imports driver {module}")
            if top in LAYERS:
                offenders.append(f"{path.relative_to(ROOT)} imports {module} (use itertrack.{module})")
            if module.startswith("."):
                offenders.append(f"{path.relative_to(ROOT)} imports {module} relatively (use itertrack.*)")
    assert offenders == []


def test_the_rule_catches_a_violation() -> None:
    """The checker sees driver, cross-layer and relative imports (so the rule test can fail)."""
    bad = "import sqlite3\nfrom itertrack.adapters.cli.app import app\nfrom ..adapters import x\n"
    assert modules_imported_by(bad) == {"sqlite3", "itertrack.adapters.cli.app", "..adapters"}
