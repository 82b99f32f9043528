"""Every store hands the event log's originator ids back as `UUID`s, and SQLite still stores them as before."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from uuid import UUID

from itertrack.adapters.bootstrap import store_of
from itertrack.domain import PerformanceTracker


def test_every_store_returns_uuid_originator_ids(
    any_store: str, open_tracker: Callable[..., PerformanceTracker]
) -> None:
    """Notifications and selected events carry the iteration id as a `UUID`, whichever the store."""
    tracker = open_tracker(any_store)
    iteration_id = tracker.start_iteration("agent-1", 1)
    notifications = store_of(tracker).recorder.select_notifications(start=None, limit=10)
    events = store_of(tracker).recorder.select_events(iteration_id)
    assert notifications
    assert events
    assert all(type(n.originator_id) is UUID and n.originator_id == iteration_id for n in notifications)
    assert all(type(e.originator_id) is UUID and e.originator_id == iteration_id for e in events)


def test_sqlite_keeps_hex_text_ids_on_disk(sqlite_store: str, open_tracker: Callable[..., PerformanceTracker]) -> None:
    """The SQLite events table still holds 32-digit hex text (no schema or data change), read back as `UUID`s."""
    tracker = open_tracker(sqlite_store)
    iteration_id = tracker.start_iteration("agent-1", 1)
    tracker.close()
    path = sqlite_store.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        stored = {row[0] for row in conn.execute("SELECT originator_id FROM stored_events")}
    assert stored == {iteration_id.hex}
    reopened = open_tracker(sqlite_store, migrate=False)
    assert [e.originator_id for e in reopened.history(iteration_id)] == [iteration_id]
