"""Idempotency keys (`change_id=`): a change retried after an unknown outcome is applied exactly once.

A keyed change's event id is derived from (iteration id, change_id) as a UUID version 5, the same on every
try; unkeyed events have random version-4 ids. The iteration remembers the keyed events it holds (id ->
a fingerprint of their content), so a retry of a landed change is recognised on load, and a key reused for
different content is refused.
"""

from __future__ import annotations

from uuid import UUID, uuid5

from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.events import new_event_id

CHANGE_ID_MAX_LENGTH = 200
# The namespace of iteration ids derived from a change_id (a keyed start that names no iteration id).
_KEYED_STARTS = UUID("5b0f8f38-5c2e-4d3b-9a57-1d0c9e6f2a41")
_UUID_VERSION_SHIFT = 76


def check_change_id(change_id: object) -> str | None:
    """The change_id as given, or None; `InvalidInputError` naming `change_id` unless it is a non-empty
    printable str of at most `CHANGE_ID_MAX_LENGTH` characters."""
    if change_id is None:
        return None
    if (
        not isinstance(change_id, str)
        or not change_id
        or len(change_id) > CHANGE_ID_MAX_LENGTH
        or not change_id.isprintable()
    ):
        raise InvalidInputError(
            "change_id", change_id, f"must be a non-empty printable str of at most {CHANGE_ID_MAX_LENGTH} characters"
        )
    return change_id


def keyed_event_id(iteration_id: UUID, change_id: str | None) -> UUID:
    """The id of the event a change makes: derived from the key (version 5) when there is one, else random."""
    return new_event_id() if change_id is None else uuid5(iteration_id, change_id)


def second_event_id(first: UUID) -> UUID:
    """The id of a keyed change's second event (a start that also saves the record), derived from the first."""
    return uuid5(first, "second event")


def keyed_iteration_id(change_id: str) -> UUID:
    """The iteration id a keyed start without one gets, the same on every retry."""
    return uuid5(_KEYED_STARTS, change_id)


def is_keyed(event_id: UUID) -> bool:
    """Whether an event id was derived from a change_id (a version-5 UUID)."""
    return (event_id.int >> _UUID_VERSION_SHIFT) & 0xF == 5  # the UUID version field
