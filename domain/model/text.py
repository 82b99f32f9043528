"""Rules for the free text the host hands us: agent ids and error messages."""

from __future__ import annotations

from uuid import UUID

from itertrack.domain.model.errors import InvalidInputError, InvalidIterationIdError

MAX_AGENT_ID = 200
MAX_ERROR_MESSAGE = 4000
MAX_ITERATION_NUMBER = 2**31 - 1


def _refuse_unstorable(field: str, value: str) -> None:
    # NUL cannot be stored in PostgreSQL text; lone surrogates cannot be encoded as UTF-8.
    if "\x00" in value:
        raise InvalidInputError(field, value, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(field, value, "must be encodable as UTF-8 (no lone surrogates)") from None


def check_agent_id(agent_id: object) -> str:
    """An agent id is 1-200 printable characters, stored verbatim."""
    if not isinstance(agent_id, str):
        raise InvalidInputError("agent_id", agent_id, "must be a string")
    if not agent_id.strip():
        raise InvalidInputError("agent_id", agent_id, "must not be empty or blank")
    if len(agent_id) > MAX_AGENT_ID:
        raise InvalidInputError("agent_id", agent_id, f"must be at most {MAX_AGENT_ID} characters")
    _refuse_unstorable("agent_id", agent_id)
    if not agent_id.isprintable():
        raise InvalidInputError("agent_id", agent_id, "must not contain control characters")
    return agent_id


def check_iteration_number(number: object) -> int:
    """An iteration number is a non-negative int (bool is not a number here)."""
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidInputError("iteration_number", number, "must be an int")
    if not 0 <= number <= MAX_ITERATION_NUMBER:
        raise InvalidInputError("iteration_number", number, f"must be between 0 and {MAX_ITERATION_NUMBER}")
    return number


def check_error_message(error: object) -> str:
    """An error message is 1-4000 characters of storable text."""
    if not isinstance(error, str):
        raise InvalidInputError("error", error, "must be a string")
    if not error.strip():
        raise InvalidInputError("error", error, "must not be empty or blank")
    if len(error) > MAX_ERROR_MESSAGE:
        raise InvalidInputError("error", error, f"must be at most {MAX_ERROR_MESSAGE} characters")
    _refuse_unstorable("error", error)
    return error


def error_message_of(exc: BaseException) -> str:
    """A storable one-message summary of an exception, cut to the length limit."""
    text = str(exc).strip() or type(exc).__name__
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_ERROR_MESSAGE:
        text = text[: MAX_ERROR_MESSAGE - 1] + "…"
    return text


def check_filter_text(field: str, value: str | None) -> str | None:
    """A text filter of a query (agent, phase, ...): None, or text that could have been stored."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(field, value, "must be a string")
    _refuse_unstorable(field, value)
    return value


def parse_iteration_id(value: object, field: str = "iteration_id") -> UUID:
    """A UUID, or a string that parses as one; else `InvalidIterationIdError` naming `field`."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidIterationIdError(field, value, "must be a UUID")
