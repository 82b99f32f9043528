"""The iteration record the host's saving step stores, under the tracked iteration's id."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.text import MAX_AGENT_ID, check_agent_id

MAX_DEPTH = 64


def _storable(value: JsonValue, path: str) -> None:
    """JSON both stores can keep: no NUL, UTF-8 text, finite numbers, at most 64 levels (walked without recursion)."""
    stack: list[tuple[JsonValue, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError(f"{where}: must not contain NUL characters")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{where}: must be encodable as UTF-8") from None
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{where}: must be a finite number, not {item}")
        elif isinstance(item, dict):
            for key, inner in item.items():
                stack.append((key, where, depth + 1))
                stack.append((inner, f"{where}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((inner, f"{where}[{i}]", depth + 1) for i, inner in enumerate(item))


class IterationRecord(BaseModel):
    """What the seed's `saveIteration` stores; `id` is the tracker's iteration id (a new one if absent)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID | None = None
    agent_id: str = Field(min_length=1, max_length=MAX_AGENT_ID)
    iteration_number: int = Field(ge=0, le=2**31 - 1)
    strategy: JsonValue = None
    scan_results: JsonValue = None
    backtest_results: JsonValue = None
    analysis: JsonValue = None
    refinements: JsonValue = None
    manual_guidance: str | None = Field(default=None, max_length=100_000)
    iteration_status: str = Field(default="completed", pattern=r"^[a-z][a-z0-9_]{0,49}$")
    # Set by the tracker's clock when the host leaves it out.
    created_at: AwareDatetime | None = None

    def __init__(self, **data: Any) -> None:
        """Built directly, a bad field raises `InvalidInputError` naming it (as `parse` does), not pydantic's error."""
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise _typed(e) from None

    @field_validator("agent_id")
    @classmethod
    def _agent_id(cls, value: str) -> str:
        try:
            return check_agent_id(value)
        except InvalidInputError as e:
            raise ValueError(e.reason) from None

    @field_validator("strategy", "scan_results", "backtest_results", "analysis", "refinements", "manual_guidance")
    @classmethod
    def _json_storable(cls, value: JsonValue) -> JsonValue:
        _storable(value, "value")
        return value

    @classmethod
    def parse(cls, data: IterationRecord | Mapping[str, Any]) -> IterationRecord:
        """Validate a record given as a mapping (the seed's `data`), raising `InvalidInputError` naming the field."""
        if isinstance(data, IterationRecord):
            return data
        if not isinstance(data, Mapping):
            raise InvalidInputError("record", data, "must be an IterationRecord or a mapping")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as e:
            raise _typed(e) from None


def _typed(error: ValidationError) -> InvalidInputError:
    """The first problem pydantic found, as the typed error naming the field (`record.<field>`) and the value."""
    first = error.errors()[0]
    inner = first.get("ctx", {}).get("error")
    if isinstance(inner, InvalidInputError):
        # Validating a mapping runs the custom __init__ inside pydantic, which wraps the typed error it raised.
        return inner
    loc = [str(part) for part in first["loc"]]
    if len(loc) > 4:
        loc = [*loc[:2], "…"]
    field = "record." + ".".join(loc) if loc else "record"
    return InvalidInputError(field, first.get("input"), first["msg"])
