"""Files the tracker creates are its owner's only (0600): the SQLite store with its WAL, the spool, the runner lock."""

from __future__ import annotations

import stat
from pathlib import Path
from uuid import uuid4

from eventsourcing.persistence import StoredEvent

from itertrack.adapters.private_files import create_private
from itertrack.adapters.spool.sqlite_file import SQLiteSpool
from itertrack.adapters.views.lock import FileProjectionLock
from itertrack.domain import PerformanceTracker


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_store_and_its_wal_are_private(tmp_path: Path) -> None:
    """The store file the tracker creates, and the -wal SQLite makes beside it, are 0600."""
    db = tmp_path / "itertrack.db"
    with PerformanceTracker(store=f"sqlite:///{db}") as tracker:
        tracker.start_iteration("agent-1", 1)
        assert mode(db) == 0o600
        assert mode(Path(f"{db}-wal")) == 0o600


def test_the_spool_file_and_the_runner_lock_are_private(tmp_path: Path) -> None:
    """A spool file created by its first change, and the projection runner's lock file, are 0600."""
    spool = SQLiteSpool(tmp_path / "spool.db")
    try:
        iid = uuid4()
        spool.add(iid, [StoredEvent(iid, 1, "topic", b"{}")], None)
    finally:
        spool.close()
    assert mode(tmp_path / "spool.db") == 0o600
    lock = FileProjectionLock(str(tmp_path / "store.db.projection-lock"))
    assert lock.try_acquire()
    lock.release()
    assert mode(tmp_path / "store.db.projection-lock") == 0o600


def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    """Files made before (by an older release, or by hand) are not changed behind their owner's back."""
    existing = tmp_path / "old.db"
    existing.write_bytes(b"")
    existing.chmod(0o640)
    create_private(str(existing))
    assert mode(existing) == 0o640
