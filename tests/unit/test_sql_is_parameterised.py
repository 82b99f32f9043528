"""Values reach SQL only as bound parameters; string-built SQL is confined to modules that build it from fixed names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Modules allowed to build SQL text with f-strings, because every interpolated part is a module constant,
# a fixed table name, or a schema name validated as an identifier by adapters/store/url.py; the spool's
# row copies name the columns of its own table (from PRAGMA table_info, quoted as identifiers).
BUILDS_FROM_FIXED_NAMES = {
    "adapters/spool/sqlite_file.py",
    "adapters/spool/quarantine.py",
    "adapters/views/sql.py",
    "adapters/views/tables.py",
    "adapters/views/sqlite.py",
    "adapters/views/postgres.py",
    "adapters/store/sqlite.py",
    "adapters/feed/checkpoints.py",  # the consumers' two tables: fixed names, the validated schema, placeholders
    # The embeddings table: its fixed name, column names and placeholders; values are bound.
    "adapters/feed/embeddings.py",
    "adapters/feed/similar.py",
}
SQL_SHAPE = re.compile(r"SELECT\s.*FROM|INSERT\s+INTO|UPDATE\s+\S*\s*SET|DELETE\s+FROM|\sWHERE\s")
# Names that carry values from callers; they must never be interpolated into SQL text.
VALUE_NAMES = {
    "agent",
    "agent_id",
    "phase",
    "status",
    "error",
    "metric",
    "metrics",
    "record",
    "since",
    "until",
    "value",
}


def string_built_sql(source: str, filename: str = "<source>") -> list[tuple[int, set[str]]]:
    """(line, interpolated names) of every f-string or %/format-built string that looks like SQL."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        text, names = None, set()
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            names = {
                n.id
                for v in node.values
                if isinstance(v, ast.FormattedValue)
                for n in ast.walk(v)
                if isinstance(n, ast.Name)
            }
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant):
            text = str(node.left.value)
            names = {n.id for n in ast.walk(node.right) if isinstance(n, ast.Name)}
        if text and SQL_SHAPE.search(text):
            found.append((getattr(node, "lineno", 0), names))
    return found


def test_only_listed_modules_build_sql_text_and_never_from_values() -> None:
    """Outside the listed modules no SQL text is built; inside them no caller value is interpolated."""
    offenders = []
    for folder in ("domain", "projections", "adapters"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = str(path.relative_to(ROOT))
            for line, names in string_built_sql(path.read_text(), relative):
                if relative not in BUILDS_FROM_FIXED_NAMES:
                    offenders.append(f"{relative}:{line} builds SQL text")
                elif names & VALUE_NAMES:
                    offenders.append(f"{relative}:{line} interpolates {sorted(names & VALUE_NAMES)}")
    assert offenders == []


def test_the_check_sees_string_built_sql() -> None:
    """The checker finds an f-string query and the value it interpolates (so the rule can fail)."""
    sample = "def q(agent):\n    return f\"SELECT * FROM t WHERE agent_id = '{agent}'\"\n"
    assert string_built_sql(sample) == [(2, {"agent"})]
