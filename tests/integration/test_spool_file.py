"""The spool file itself: a real SQLite file, readable after an upgrade, paged in order."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from fake_clock import FakeClock
from switchable_store import SwitchableStore, spooling_tracker

from itertrack.adapters.spool.sqlite_file import SQLiteSpool
from itertrack.adapters.spool.writer import SpoolingWriter
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


def on_disk(path: Path) -> int:
    """The bytes the spool takes on disk: the file and its WAL."""
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_the_spool_file_shrinks_back_after_a_large_backlog_is_forwarded(tmp_path: Path) -> None:
    """Forwarding that empties the spool gives the disk space back (VACUUM, WAL truncated)."""
    store = SwitchableStore()
    path = tmp_path / "spool.db"
    host = spooling_tracker(store, path, FakeClock())
    try:
        iids = [host.start_iteration("agent-1", n) for n in range(20)]
        store.recorder.up = False
        for n in range(1500):
            host.update_metrics(iids[n % 20], {f"metric_{k}_" + "x" * 80: n for k in range(3)})
        spool = host.ports.writer
        assert isinstance(spool, SpoolingWriter)
        assert spool.spool.count() == 1500
        backlog = on_disk(path)
        store.recorder.up = True
        flushed = spool.flush()
        assert (flushed.forwarded, flushed.waiting, flushed.stuck) == (1500, 0, 0)
        drained = on_disk(path)
        assert drained * 10 < backlog, (drained, backlog)
        host.update_metrics(iids[0], {"analysis_tokens": 1})  # the tracker goes on as before
    finally:
        host.close()


def test_reclaiming_keeps_the_changes_still_in_the_file(tmp_path: Path) -> None:
    """A stuck change left after the others were forwarded stays; the space of the others is given back."""
    path = tmp_path / "spool.db"
    spool = SQLiteSpool(path)
    try:
        for n in range(2000):
            spool.add_deferred(
                uuid4(), DeferredChange(at=datetime.now(UTC), change=PhaseChange(event_id=uuid4(), phase=f"p{n}")), None
            )
        kept, *forwarded = spool.waiting(10**6)
        spool.mark_stuck(kept.id, "by hand")
        full = on_disk(path)
        spool.remove(*(c.id for c in forwarded))
        spool.reclaim()
        assert on_disk(path) * 10 < full, (on_disk(path), full)
        [left] = spool.waiting(10)
        assert (left.id, left.stuck, left.deferred) == (kept.id, "by hand", kept.deferred)
    finally:
        spool.close()


def test_recovering_a_file_twice_stores_each_change_once(tmp_path: Path) -> None:
    """`spool recover` adds what a (damaged) file holds; forwarding recognises what the store already has."""
    store = SwitchableStore()
    host = spooling_tracker(store, tmp_path / "spool.db", FakeClock())
    try:
        iid = host.start_iteration("agent-1", 1)
        store.recorder.up = False
        for n in range(1, 6):
            host.update_metrics(iid, {"analysis_tokens": n})
        writer = host.ports.writer
        assert isinstance(writer, SpoolingWriter)
        copy = sqlite3.connect(tmp_path / "copy.db")
        with sqlite3.connect(tmp_path / "spool.db") as source:
            source.backup(copy)  # what a damaged file might still hold: all five changes
        copy.close()
        store.recorder.up = True
        writer.flush()  # forwarded before the damage: the copy holds changes the store already has
        before = [e.originator_version for e in host.history(iid)]
        assert before == [1, 2, 3, 4, 5, 6]
        other = SQLiteSpool(tmp_path / "other.db")
        try:
            assert other.recover(tmp_path / "copy.db") == (5, 5)
            assert other.recover(tmp_path / "copy.db") == (5, 5)
        finally:
            other.close()
    finally:
        host.close()
    again = spooling_tracker(store, tmp_path / "other.db", FakeClock())
    try:
        writer = again.ports.writer
        assert isinstance(writer, SpoolingWriter)
        flushed = writer.flush()
        assert (flushed.forwarded, flushed.already_stored, flushed.stuck, flushed.waiting) == (0, 10, 0, 0)
        assert [e.originator_version for e in again.history(iid)] == before
        assert again.get_iteration(iid).metrics["analysis_tokens"] == 15
    finally:
        again.close()
