"""The value types every JSON document shares: instants in UTC with `Z`, whole counts, amounts, exact dollars."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, WithJsonSchema


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("must carry a time zone")
    return moment.astimezone(UTC)


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# An instant: aware, written in ISO 8601 in UTC with `Z` (to the microsecond): "2026-11-30T07:41:48.153070Z".
Instant = Annotated[
    datetime,
    AfterValidator(_utc),
    PlainSerializer(_z, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$"},
        mode="serialization",
    ),
]


def _whole(value: int | float) -> int | float:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A metric's amount: a whole number is written as an integer (12, never 12.0), a fraction as a number.
Amount = Annotated[int | float, AfterValidator(_whole)]

# Dollars: exact decimal strings ("0.0123"), never floats.
Usd = Annotated[
    Decimal,
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}, mode="serialization"),
]


class Model(BaseModel):
    """A document's part: frozen, no field it does not declare (so the schema's `additionalProperties` is false)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def plain(value: Any) -> Any:
    """`value` as plain Python data for a model to validate: pydantic models dumped (python mode), the rest as is."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    return value
