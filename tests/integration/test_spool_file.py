"""The spool file itself: a real SQLite file, readable after an upgrade, paged in order."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from itertrack.adapters.spool.sqlite_file import SQLiteSpool
from itertrack.domain.model.changes import DeferredChange, PhaseChange


def test_a_spool_file_written_before_deferred_changes_existed_still_opens(tmp_path: Path) -> None:
    """Its waiting rows stay readable and deferred changes can join them (the column is added)."""
    path = tmp_path / "old-spool.db"
    iid = uuid4()
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE spooled_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "iteration_id TEXT NOT NULL, events TEXT NOT NULL, record TEXT, stuck TEXT)"
        )
        old.execute("INSERT INTO spooled_changes (iteration_id, events) VALUES (?, '[]')", (str(iid),))
    spool = SQLiteSpool(path)
    try:
        assert [(c.iteration_id, c.deferred) for c in spool.waiting(10)] == [(iid, None)]
        change = DeferredChange(at=datetime.now(UTC), change=PhaseChange(event_id=uuid4(), phase="analysis"))
        spool.add_deferred(iid, change, None)
        assert spool.counts(iid) == (2, 1)
        assert [c.deferred for c in spool.waiting(10)] == [None, change]
        assert [e.deferred for e in spool.status().entries] == [None, "phase analysis"]
    finally:
        spool.close()


def test_waiting_pages_past_changes_already_seen(tmp_path: Path) -> None:
    """`after` skips what a pass has handled, so stuck changes at the head never hide the ones behind."""
    spool = SQLiteSpool(tmp_path / "spool.db")
    try:
        iid = uuid4()
        for n in range(5):
            change = DeferredChange(at=datetime.now(UTC), change=PhaseChange(event_id=uuid4(), phase=f"p{n}"))
            spool.add_deferred(iid, change, None)
        first = spool.waiting(2)
        spool.mark_stuck(first[0].id, "by hand")
        rest = spool.waiting(10, after=first[-1].id)
        assert [c.deferred.change.phase for c in rest if c.deferred and isinstance(c.deferred.change, PhaseChange)] == [
            "p2",
            "p3",
            "p4",
        ]
        assert spool.counts(uuid4()) == (0, 0)
    finally:
        spool.close()


def test_a_row_that_cannot_be_read_comes_back_stuck_and_the_rest_stay_usable(tmp_path: Path) -> None:
    """A damaged row (edited by hand, another release) blocks only itself; status and discard still work."""
    path = tmp_path / "spool.db"
    spool = SQLiteSpool(path)
    try:
        damaged, fine = uuid4(), uuid4()
        for iid in (damaged, fine):
            change = DeferredChange(at=datetime.now(UTC), change=PhaseChange(event_id=uuid4(), phase="analysis"))
            spool.add_deferred(iid, change, None)
        with sqlite3.connect(path) as raw:
            raw.execute("UPDATE spooled_changes SET deferred = '{not json' WHERE iteration_id = ?", (str(damaged),))
        first, second = spool.waiting(10)
        assert (first.iteration_id, first.deferred, first.events) == (damaged, None, ())
        assert (first.stuck or "").startswith("unreadable row (ValidationError)")
        assert (second.iteration_id, second.stuck) == (fine, None)
        assert spool.status().stuck == 1
        assert (spool.stuck_count(), spool.count()) == (1, 1)  # the mark is kept in the file
        assert [c.iteration_id for c in spool.waiting(10, movable=True)] == [fine]
        spool.remove(first.id)
        assert (spool.stuck_count(), spool.count()) == (0, 1)
    finally:
        spool.close()
