"""The envelope of every JSON document itertrack writes (`--json` output, `/api/` answers) and their registry.

Every document is one object::

    {"schema": "itertrack.status", "schema_version": 1, "data": {...}}

`schema` names the document, `schema_version` is its version (a whole number, per document), `data` the payload
(always an object, so a field can be added without changing its shape). The version goes up when a field is
removed or renamed, changes type, unit or meaning, or a value it could take is no longer written; adding a field
(or a value to an open set) does not change it, so a reader ignores fields it does not know. The JSON Schema of
each document (draft 2020-12) is generated from its pydantic model and published in `schemas/<name>.schema.json`
(`python -m scripts.json_schemas` writes them; a test holds them equal to the models).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

SCHEMA_PREFIX = "itertrack."
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class Kind:
    """One kind of document: its name (`itertrack.<name>`), version, payload model and what it is."""

    name: str
    version: int
    data: type[BaseModel]
    about: str

    @property
    def schema_name(self) -> str:
        """`itertrack.<name>`: the envelope's `schema`."""
        return SCHEMA_PREFIX + self.name

    @property
    def file(self) -> Path:
        """Where its JSON Schema is published."""
        return SCHEMA_DIR / f"{self.name}.schema.json"


DOCUMENTS: dict[str, Kind] = {}

M = TypeVar("M", bound=type[BaseModel])


def document(name: str, version: int, about: str) -> Callable[[M], M]:
    """Register the decorated model as the payload (`data`) of the document `name`, at `version`."""

    def register(model: M) -> M:
        if name in DOCUMENTS:
            raise ValueError(f"document {name!r} is registered twice")
        DOCUMENTS[name] = Kind(name, version, model, about)
        return model

    return register


def kind_of(name: str) -> Kind:
    """The registered kind `name` (`KeyError` when none)."""
    from itertrack.adapters.documents import catalog  # noqa: F401, PLC0415 - registers every document

    return DOCUMENTS[name]


def render(name: str, data: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """The document `name` holding `data` (its payload model, or a mapping the model validates) as JSON types.

    Raises pydantic's `ValidationError` when `data` does not fit the model (a bug: the commands build it).
    """
    kind = kind_of(name)
    payload = data if isinstance(data, kind.data) else kind.data.model_validate(data)
    return {
        "schema": kind.schema_name,
        "schema_version": kind.version,
        "data": payload.model_dump(mode="json"),
    }


def dumps(name: str, data: BaseModel | dict[str, Any], *, indent: int | None = None) -> str:
    """`render` as JSON text (non-ASCII characters as `\\u` escapes, so any terminal or pipe can carry it)."""
    separators = None if indent else (",", ":")
    return json.dumps(render(name, data), indent=indent, separators=separators)


def envelope_model(kind: Kind) -> type[BaseModel]:
    """The pydantic model of the whole document of `kind` (envelope and payload), for its JSON Schema."""
    title = "".join(part.capitalize() for part in kind.name.replace("-", ".").split(".")) + "Document"
    model: type[BaseModel] = create_model(
        title,
        __config__=ConfigDict(extra="forbid", populate_by_name=True),
        schema_=(Literal[kind.schema_name], Field(alias="schema")),  # type: ignore[arg-type]
        schema_version=(Literal[kind.version], ...),  # type: ignore[arg-type]
        data=(kind.data, ...),
    )
    model.__doc__ = kind.about
    return model


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the document `name`, as written: what `render` produces."""
    kind = kind_of(name)
    schema = envelope_model(kind).model_json_schema(mode="serialization", by_alias=True)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"https://itertrack.invalid/schemas/{kind.name}.schema.json",
        **schema,
    }


def schema_text(name: str) -> str:
    """The published file's text for the document `name` (stable: sorted keys, two-space indent, final newline)."""
    return json.dumps(json_schema(name), indent=2, sort_keys=True) + "\n"


def published_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of `name` as published in the package (`schemas/<name>.schema.json`)."""
    loaded: dict[str, Any] = json.loads(kind_of(name).file.read_text(encoding="utf-8"))
    return loaded


def names() -> list[str]:
    """Every registered document, sorted."""
    from itertrack.adapters.documents import catalog  # noqa: F401, PLC0415 - registers every document

    return sorted(DOCUMENTS)
