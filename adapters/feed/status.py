"""What `itertrack consumers` shows: each named consumer's position, lag, state, last error and recorded skips."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.feed.checkpoints import CheckpointRow, ConsumerTables, SkipRow
from itertrack.adapters.feed.runner import consumer_lock
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.service.tracker import PerformanceTracker

State = Literal["idle", "running", "failed"]


class Skip(BaseModel):
    """One event an operator skipped: which, the error it failed with, why, by whom and when."""

    model_config = ConfigDict(frozen=True)

    position: int
    event_key: str | None
    event_type: str | None
    error: str | None
    reason: str
    skipped_by: str
    skipped_at: datetime


class ConsumerStatus(BaseModel):
    """One consumer on one store.

    `position`: notification id of the last event it is done with; `latest`: the log's newest; `lag_events`:
    `latest - position`; `lag_seconds`: the newest event's timestamp minus that of the event at `position` (of
    the log's first event before the first delivery), 0.0 when caught up. `state`: `failed` when a handler
    raised (at `failed_position`, with `last_error`), else `running` while a runner holds its lock, else `idle`.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    position: int
    latest: int
    lag_events: int
    lag_seconds: float
    state: State
    failed_position: int | None
    last_error: str | None
    failed_at: datetime | None
    updated_at: datetime | None
    skips: tuple[Skip, ...]


def event_at(tracker: PerformanceTracker, position: int) -> Iteration.Event | None:
    """The event at notification id `position` of the tracker's log (the first after it if there is a gap; None
    past the end)."""
    store = store_of(tracker)
    found = store.recorder.select_notifications(start=max(position, 1), limit=1)
    if not found:
        return None
    event = store.mapper.to_domain_event(found[0])
    return event if isinstance(event, Iteration.Event) else None


def _state(tracker: PerformanceTracker, row: CheckpointRow) -> State:
    if row.failed_position is not None:
        return "failed"
    lock = consumer_lock(tracker, row.name)
    if lock.try_acquire():  # free: no runner holds it (released at once)
        lock.release()
        return "idle"
    return "running"


def consumer_statuses(tracker: PerformanceTracker) -> list[ConsumerStatus]:
    """Every consumer that ran on the tracker's store, by name (empty before the first)."""
    tables = ConsumerTables.of(store_of(tracker).factory)
    rows = tables.rows()
    if not rows:
        return []
    skips: dict[str, list[SkipRow]] = {}
    for skip in tables.skips():
        skips.setdefault(skip.name, []).append(skip)
    latest = store_of(tracker).recorder.max_notification_id() or 0
    newest = event_at(tracker, latest) if latest else None
    out = []
    for row in rows:
        lag_seconds = 0.0
        if newest is not None and row.position < latest:
            at = event_at(tracker, row.position)
            if at is not None:
                lag_seconds = max(0.0, (newest.timestamp - at.timestamp).total_seconds())
        out.append(
            ConsumerStatus(
                name=row.name,
                position=row.position,
                latest=latest,
                lag_events=max(0, latest - row.position),
                lag_seconds=lag_seconds,
                state=_state(tracker, row),
                failed_position=row.failed_position,
                last_error=row.last_error,
                failed_at=row.failed_at,
                updated_at=row.updated_at,
                skips=tuple(
                    Skip(
                        position=s.position,
                        event_key=s.event_key,
                        event_type=s.event_type,
                        error=s.error,
                        reason=s.reason,
                        skipped_by=s.skipped_by,
                        skipped_at=s.skipped_at,
                    )
                    for s in skips.get(row.name, [])
                ),
            )
        )
    return out


def describe(tracker: PerformanceTracker, position: int) -> tuple[str, str] | None:
    """The key and type of the event at exactly `position` (None if the log has none there)."""
    store = store_of(tracker)
    found = store.recorder.select_notifications(start=position, limit=1)
    if not found or found[0].id != position:
        return None
    event = store.mapper.to_domain_event(found[0])
    return f"{event.originator_id}:{event.originator_version}", type(event).__name__
