"""Rules for the free text the host hands us: agent ids and error messages."""

from __future__ import annotations

from uuid import UUID

from itertrack.domain.model.errors import InvalidInputError, InvalidIterationIdError

MAX_AGENT_ID = 200
MAX_ERROR_MESSAGE = 4000
EMPTY_ERROR_MESSAGE = "(empty error message)"
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
    """The error message of a `failed` phase as it will be stored: a str of 1-4000 characters.

    The failure must always be recorded, so the text itself never refuses it: NUL characters and lone
    surrogates (which no store can keep) are escaped (`\\x00`, `\\ud800`), a blank message becomes
    `(empty error message)`, and a message longer than `MAX_ERROR_MESSAGE` is cut, ending in a marker with
    its original length (`…[cut to 4,000 of 8,660 characters]`). Other control characters (newlines of a
    traceback, ESC) are kept as given. Text already within these rules is returned unchanged, so applying
    it twice changes nothing. Raises `InvalidInputError` only when `error` is not a str.
    """
    if not isinstance(error, str):
        raise InvalidInputError("error", error, "must be a string")
    text = error
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if not text.strip():
        return EMPTY_ERROR_MESSAGE
    if len(text) > MAX_ERROR_MESSAGE:
        marker = f"…[cut to {MAX_ERROR_MESSAGE:,} of {len(error):,} characters]"
        text = text[: MAX_ERROR_MESSAGE - len(marker)] + marker
    return text


def error_message_of(exc: BaseException) -> str:
    """A storable one-message summary of an exception (`check_error_message` of its text, else its type name)."""
    return check_error_message(str(exc).strip() or type(exc).__name__)


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
