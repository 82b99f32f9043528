"""JSON for the dashboard's API and live stream: times in ISO 8601 UTC with `Z`, dollars as exact strings."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from itertrack.adapters.web.filters import iso


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def dumps(data: Any) -> str:
    """One line of JSON (no newline inside, so it fits one SSE `data:` line)."""
    return json.dumps(data, default=_default, separators=(",", ":"), ensure_ascii=False)


def jsonable(data: Any) -> Any:
    """`data` with times, dollars and ids turned into JSON's types (for templates' `tojson`)."""
    return json.loads(dumps(data))
