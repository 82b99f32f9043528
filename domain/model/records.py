"""The iteration record the host's saving step stores, under the tracked iteration's id."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.text import MAX_AGENT_ID, check_agent_id

MAX_DEPTH = 64
# Python's default int-to-str limit, and the most digits pydantic's JSON parser reads back (a spooled record).
MAX_INT_DIGITS = 4300
_INT_BOUND = 10**MAX_INT_DIGITS


def _digits(value: int) -> int:
    """How many decimal digits `value` has, without converting it to text (which may be refused)."""
    magnitude = abs(value)
    digits = max(1, math.floor(math.log10(magnitude)) + 1) if magnitude else 1
    return digits + 1 if magnitude >= 10**digits else digits  # log10 rounding near a power of ten


def _refuse_unstorable_scalar(item: JsonValue, field: str, where: str) -> None:
    """Raise `InvalidInputError` for a string, int or float (at `where` in `field`) a store or reader cannot keep."""
    if isinstance(item, str):
        if "\x00" in item:
            raise InvalidInputError(field, item, f"at {where}: must not contain NUL characters")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError(field, item, f"at {where}: must be encodable as UTF-8") from None
    elif isinstance(item, int):
        if not -_INT_BOUND < item < _INT_BOUND:
            raise InvalidInputError(
                field,
                f"<an int of {_digits(item):,} digits>",
                f"at {where}: integers must have at most {MAX_INT_DIGITS:,} digits (no JSON reader takes more)",
            )
    elif isinstance(item, float) and not math.isfinite(item):
        raise InvalidInputError(field, item, f"at {where}: must be a finite number, not {item}")


def _storable(value: JsonValue, field: str) -> None:
    """JSON both stores can keep and every reader can read back: no NUL, UTF-8 text, finite numbers, integers of
    at most 4,300 digits, at most 64 levels (walked without recursion).

    Raises `InvalidInputError` naming `field`, the offending item (shortened) and its path inside the value.
    """
    stack: list[tuple[JsonValue, str, int]] = [(value, field, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidInputError(field, f"<at {where}>", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key, inner in item.items():
                stack.append((key, where, depth + 1))
                stack.append((inner, f"{where}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((inner, f"{where}[{i}]", depth + 1) for i, inner in enumerate(item))
        else:
            _refuse_unstorable_scalar(item, field, where)


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
    def _json_storable(cls, value: JsonValue, info: ValidationInfo) -> JsonValue:
        _storable(value, f"record.{info.field_name}")
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
