"""Rules for what the host tells about one LLM call besides its usage: provider, model, ids, duration, options."""

from __future__ import annotations

import math
import re

from itertrack.domain.model.errors import InvalidInputError

DEFAULT_PROVIDER = "anthropic"
PROVIDER = re.compile(r"^[a-z0-9][a-z0-9._-]{0,49}$")
MAX_MODEL = 200
MAX_REQUEST_ID = 200
MAX_GEO = 50
# A call's duration is kept in ms; more than about 31 years is no call's.
MAX_DURATION_MS = 1e12


def check_provider(provider: object) -> str:
    """A provider name: 1-50 lowercase ASCII letters, digits, `.`, `_` or `-` (`anthropic`, `openai`, ...)."""
    if not isinstance(provider, str) or not PROVIDER.fullmatch(provider):
        raise InvalidInputError("provider", provider, "must be 1-50 lowercase ASCII letters, digits, '.', '_' or '-'")
    return provider


def check_optional_text(field: str, value: object, limit: int) -> str | None:
    """None, or a non-empty printable str of at most `limit` characters (a model name, a request id, ...)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise InvalidInputError(
            field, value, f"must be None or a non-empty printable str of at most {limit} characters"
        )
    return value


def check_duration_ms(duration_ms: object) -> float | None:
    """None, or a finite, non-negative number of milliseconds (bool is not a number here)."""
    if duration_ms is None:
        return None
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int | float):
        raise InvalidInputError("duration_ms", duration_ms, "must be None or a number of milliseconds")
    if not math.isfinite(duration_ms) or not 0 <= duration_ms <= MAX_DURATION_MS:
        raise InvalidInputError("duration_ms", duration_ms, f"must be finite, from 0 to {MAX_DURATION_MS:.0f}")
    return float(duration_ms)


def check_batch(batch: object) -> bool:
    """Whether the call went through a batch API: a bool."""
    if not isinstance(batch, bool):
        raise InvalidInputError("batch", batch, "must be a bool")
    return batch
