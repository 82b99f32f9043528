"""Audit replay, pure: the state a prefix of an iteration's events builds, and the version as of an instant."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.state import IterationState


def state_of(events: Sequence[Iteration.Event]) -> IterationState:
    """The state the given events (from version 1 on) build, on a fresh aggregate (no cache involved)."""
    iteration: Iteration | None = None
    for event in events:
        iteration = event.mutate(iteration)
    assert iteration is not None
    return IterationState.of(iteration)


def version_at(events: Sequence[Iteration.Event], at: object) -> int:
    """The last version whose event timestamp is at or before `at` (`InvalidInputError` naming `at` otherwise)."""
    instant = checked_instant(at)
    if instant < events[0].timestamp:
        raise before_start(instant, events[0])
    chosen = events[0].originator_version
    for event in events:
        if event.timestamp > instant:
            break
        chosen = event.originator_version
    return chosen


def checked_instant(at: object) -> datetime:
    """`at` itself when it is a timezone-aware datetime; `InvalidInputError` naming `at` otherwise."""
    if not isinstance(at, datetime):
        raise InvalidInputError("at", at, "must be a datetime")
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInputError("at", at, "must be timezone-aware")
    return at


def checked_version(version: object) -> int:
    """`version` itself when it is an int from 1 to 2**62; `InvalidInputError` naming `version` otherwise."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 2**62:
        raise InvalidInputError("version", version, "must be an int of at least 1")
    return version


def before_start(at: datetime, first: Iteration.Event) -> InvalidInputError:
    """The error of an instant before the iteration's first event."""
    return InvalidInputError("at", at.isoformat(), f"is before the iteration began ({first.timestamp.isoformat()})")


def beyond_last(version: int, last: int) -> InvalidInputError:
    """The error of a version after the iteration's last one."""
    return InvalidInputError("version", version, f"is beyond the iteration's last version {last}")
