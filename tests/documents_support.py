"""Reading itertrack's JSON documents in tests: each is checked against its published JSON Schema and the
vocabulary's rules before its payload is handed back."""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator

from itertrack.adapters.documents.envelope import kind_of, published_schema

_INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Fields that are counts wherever they appear: whole numbers, written as JSON integers.
COUNTS = frozenset(
    {
        "iterations",
        "completed",
        "failed",
        "running",
        "count",
        "calls",
        "tokens",
        "version",
        "iteration_number",
        "position",
        "events",
        "records",
        "waiting",
        "stuck",
        "input_tokens",
        "output_tokens",
    }
)


def vocabulary_problems(value: Any, where: str = "") -> list[str]:
    """Where `value` breaks the vocabulary: a key `id` (iterations are `iteration_id`, spool changes
    `change_id`), a timestamp not in UTC with `Z`, a count written as a float."""
    problems: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            path = f"{where}.{key}"
            if key == "id":
                problems.append(f"{path}: a bare `id`")
            if key in COUNTS and isinstance(inner, float):
                problems.append(f"{path}: the count {inner!r} is a float")
            problems += vocabulary_problems(inner, path)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            problems += vocabulary_problems(inner, f"{where}[{index}]")
    elif isinstance(value, str) and _INSTANT.match(value) and not value.endswith("Z"):
        problems.append(f"{where}: the timestamp {value!r} is not UTC with Z")
    return problems


def check_document(document: Any, name: str) -> Any:
    """`document` (parsed JSON) checked: the envelope names `itertrack.<name>` at its version, it validates
    against the published schema (formats too), and it keeps the vocabulary's rules; returns its `data`."""
    kind = kind_of(name)
    assert isinstance(document, dict), document
    assert (document.get("schema"), document.get("schema_version")) == (kind.schema_name, kind.version), document
    validator = Draft202012Validator(published_schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, f"{name}: {errors[:5]}"
    problems = vocabulary_problems(document)
    assert not problems, f"{name}: {problems[:5]}"
    return document["data"]


def payload(text: str, name: str) -> Any:
    """The payload of the document `name` printed as `text` (a command's stdout, a response's body), checked."""
    return check_document(json.loads(text), name)


def is_uuid(text: str) -> bool:
    """Whether `text` is a UUID written in the canonical form."""
    return bool(_UUID.match(text))
