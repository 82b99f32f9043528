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
    if not isinstance(at, datetime):
        raise InvalidInputError("at", at, "must be a datetime")
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInputError("at", at, "must be timezone-aware")
    if at < events[0].timestamp:
        raise InvalidInputError(
            "at", at.isoformat(), f"is before the iteration began ({events[0].timestamp.isoformat()})"
        )
    chosen = events[0].originator_version
    for event in events:
        if event.timestamp > at:
            break
        chosen = event.originator_version
    return chosen
