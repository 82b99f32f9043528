"""Imports point one way: domain <- projections <- adapters <- scripts; only adapters touch drivers; the domain
holds no infrastructure."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["domain", "projections", "adapters"]
DRIVERS = {"psycopg", "psycopg_pool", "sqlite3"}
# A module named inside a string (a topic such as "itertrack.adapters.bootstrap:wire") is an import too.
NAMED_IN_STRING = re.compile(r"\bitertrack\.(?:domain|projections|adapters)(?:\.[a-z_][a-z0-9_]*)*")
DOMAIN_FREE_OF = {"eventsourcing.persistence", "random", "socket", "psycopg", "sqlite3", "asyncio"}


def imported_modules(path: Path) -> set[str]:
    return modules_imported_by(path.read_text(), str(path))


def modules_imported_by(source: str, filename: str = "<source>") -> set[str]:
    """Every module the source imports, and every `itertrack.<layer>...` name written in a string."""
    tree = ast.parse(source, filename=filename)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(m.group(0) for m in NAMED_IN_STRING.finditer(node.value))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.add("." * node.level + (node.module or ""))  # relative: reported, the rule wants absolute
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def infrastructure_in(source: str, filename: str = "<source>") -> list[str]:
    """What the source holds that the domain must not: persistence errors, randomness, threads, sleeps."""
    found = [
        f"imports {m}"
        for m in modules_imported_by(source, filename)
        if m in DOMAIN_FREE_OF or m.split(".")[0] in DOMAIN_FREE_OF
    ]
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Attribute) and node.attr in ("Thread", "sleep", "Timer"):
            found.append(f"uses .{node.attr} (line {node.lineno})")
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_inward(layer: str) -> None:
    """No module imports (or names in a string) a layer outside its own or those before it; no driver in domain
    and projections."""
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
    """The checker sees driver, cross-layer and relative imports, and a module named in a string."""
    bad = (
        "import sqlite3\nfrom itertrack.adapters.cli.app import app\nfrom ..adapters import x\n"
        'TOPIC = "itertrack.adapters.store.factory:open_factory"\n'
    )
    assert modules_imported_by(bad) == {
        "sqlite3",
        "itertrack.adapters.cli.app",
        "..adapters",
        "itertrack.adapters.store.factory",
    }


def test_the_domain_holds_no_infrastructure() -> None:
    """domain/ imports nothing from eventsourcing.persistence, no randomness, and starts no thread and no sleep."""
    offenders = [
        f"{path.relative_to(ROOT)} {what}"
        for path in sorted((ROOT / "domain").rglob("*.py"))
        for what in infrastructure_in(path.read_text(), str(path))
    ]
    assert offenders == []


def test_the_infrastructure_rule_catches_a_violation() -> None:
    """The checker sees a persistence import, randomness, a thread and a sleep."""
    bad = (
        "import random\nimport threading, time\nfrom eventsourcing.persistence import IntegrityError\n"
        "threading.Thread(target=print).start()\ntime.sleep(1)\n"
    )
    assert sorted(infrastructure_in(bad)) == [
        "imports eventsourcing.persistence",
        "imports random",
        "uses .Thread (line 4)",
        "uses .sleep (line 5)",
    ]
