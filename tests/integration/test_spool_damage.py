"""A damaged spool file is moved aside and a new one started; errors that are not damage change nothing."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from itertrack.adapters.bootstrap import spooling_writer
from itertrack.adapters.spool.quarantine import describe, file_identity, is_damage, quarantine, quarantined_files
from itertrack.adapters.spool.sqlite_file import SQLiteSpool
from itertrack.domain import PerformanceTracker, StoreUnavailableError

PAGE = 4096


def spool_with_rows(path: Path, n: int) -> None:
    """A spool file of `n` waiting (stuck-marked) rows, each findable in the file by `MARK-<id>-`."""
    spool = SQLiteSpool(path)
    try:
        spool.add(uuid4(), [StoredEvent(uuid4(), 1, "topic", b"{}")], None)  # creates the file and its table
        spool.remove(*(c.id for c in spool.waiting(10)))
    finally:
        spool.close()
    raw = sqlite3.connect(path)
    raw.executemany(
        "INSERT INTO spooled_changes (id, iteration_id, events, stuck) VALUES (?, ?, '[]', ?)",
        [(i, str(uuid4()), f"MARK-{i:05d}-" + "x" * 300) for i in range(1, n + 1)],
    )
    raw.commit()
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in the main file, where the test damages it
    raw.close()


def quarantined(path: Path) -> list[Path]:
    return quarantined_files(path)


def test_a_file_that_is_not_a_database_is_moved_aside_with_its_companions_and_a_new_spool_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spool.db"
    path.write_bytes(b"not a database " * 400)
    Path(f"{path}-wal").write_bytes(b"a stale log")
    spool = SQLiteSpool(path)
    try:
        with caplog.at_level(logging.WARNING, logger="itertrack"):
            assert spool.count() == 0
        iid = uuid4()
        spool.add(iid, [StoredEvent(iid, 1, "topic", b"{}")], None)
        assert spool.count(iid) == 1
    finally:
        spool.close()
    [moved] = quarantined(path)
    assert moved.name.startswith("spool.db.damaged-")
    assert moved.read_bytes() == b"not a database " * 400
    assert Path(f"{moved}-wal").read_bytes() == b"a stale log"  # beside it, under its new name
    assert "is damaged (file is not a database)" in caplog.text
    assert str(moved) in caplog.text
    assert describe(moved).readable_rows == 0


def test_a_malformed_file_is_moved_aside_and_the_rows_before_the_fault_can_still_be_read(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool_with_rows(path, 400)
    data = bytearray(path.read_bytes())
    page = data.index(b"MARK-00200-") // PAGE
    data[page * PAGE : (page + 1) * PAGE] = b"\xa5" * PAGE  # one page of the table overwritten
    path.write_bytes(bytes(data))
    spool = SQLiteSpool(path)
    try:
        assert spool.count() == 0  # a new spool, not the damaged one
    finally:
        spool.close()
    [moved] = quarantined(path)
    readable = describe(moved).readable_rows
    assert 0 < readable < 200  # those on the pages before the damaged one


def test_an_error_that_is_not_damage_leaves_the_file_where_it_is(tmp_path: Path) -> None:
    """A spool path SQLite cannot open (here a folder; as with a read-only or full mount) raises typed, as before."""
    path = tmp_path / "spool.db"
    path.mkdir()
    spool = SQLiteSpool(path)
    try:
        with pytest.raises(StoreUnavailableError, match="cannot be used"):
            spool.add(uuid4(), [], None)
    finally:
        spool.close()
    assert path.is_dir()
    assert quarantined(path) == []


def sqlite_error(statement: str, path: Path, **connect: object) -> sqlite3.Error:
    conn = sqlite3.connect(path, **connect)  # type: ignore[call-overload]
    try:
        conn.execute(statement)
    except sqlite3.Error as e:
        return e
    finally:
        conn.close()
    raise AssertionError(f"{statement} did not fail")


def test_only_not_a_database_and_malformed_count_as_damage(tmp_path: Path) -> None:
    """Real errors from SQLite: damage for a garbage or malformed file; a full disk, a read-only file or a lock
    is a condition of the machine, which waiting or a person cures, so the file is left alone."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"x" * PAGE)
    assert is_damage(sqlite_error("SELECT * FROM sqlite_master", garbage))

    malformed = tmp_path / "malformed.db"
    spool_with_rows(malformed, 400)
    data = bytearray(malformed.read_bytes())
    page = data.index(b"MARK-00200-") // PAGE
    data[page * PAGE : (page + 1) * PAGE] = b"\xa5" * PAGE
    malformed.write_bytes(bytes(data))
    assert is_damage(sqlite_error("SELECT count(stuck) FROM spooled_changes", malformed))

    fine = tmp_path / "fine.db"
    spool_with_rows(fine, 10)
    full = sqlite3.connect(fine)
    full.execute("PRAGMA max_page_count = 1")  # as a disk with no room left
    with pytest.raises(sqlite3.Error) as raised:
        full.execute("INSERT INTO spooled_changes (iteration_id, events) VALUES ('x', ?)", ("y" * 10 * PAGE,))
    full.close()
    assert raised.value.sqlite_errorcode == sqlite3.SQLITE_FULL
    assert not is_damage(raised.value)

    read_only = sqlite_error("DELETE FROM spooled_changes", Path(fine.as_uri() + "?mode=ro"), uri=True)
    assert read_only.sqlite_errorcode == sqlite3.SQLITE_READONLY
    assert not is_damage(read_only)

    holder = sqlite3.connect(fine, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        locked = sqlite_error("DELETE FROM spooled_changes", fine, timeout=0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert locked.sqlite_errorcode == sqlite3.SQLITE_BUSY
    assert not is_damage(locked)


def test_a_spool_moved_aside_by_another_process_is_never_written_by_this_one(tmp_path: Path) -> None:
    """A process that has the file open when another moves it aside refuses (typed) instead of acknowledging
    changes into the quarantined file; once restarted it uses the new one."""
    path = tmp_path / "spool.db"
    first = SQLiteSpool(path)
    iid = uuid4()
    try:
        first.add(iid, [StoredEvent(iid, 1, "topic", b"{}")], None)
        aside_path = quarantine(path, file_identity(path))  # as another process does that found it damaged
        with pytest.raises(StoreUnavailableError, match="moved aside or replaced"):
            first.add(iid, [StoredEvent(iid, 2, "topic", b"{}")], None)
    finally:
        first.close()
    assert aside_path is not None
    aside = sqlite3.connect(aside_path)
    assert aside.execute("SELECT count(*) FROM spooled_changes").fetchone() == (1,)
    aside.close()
    restarted = SQLiteSpool(path)
    try:
        restarted.add(iid, [StoredEvent(iid, 2, "topic", b"{}")], None)
        assert restarted.count() == 1
    finally:
        restarted.close()


def test_two_spools_finding_the_same_file_damaged_move_it_aside_once(tmp_path: Path) -> None:
    """The second finds the name already naming a new, good file and uses it: one quarantined file, one spool."""
    path = tmp_path / "spool.db"
    path.write_bytes(b"not a database " * 400)
    a, b = SQLiteSpool(path), SQLiteSpool(path)
    try:
        iid = uuid4()
        a.add(iid, [StoredEvent(iid, 1, "topic", b"{}")], None)
        assert b.count(iid) == 1  # b opened the file a started, and moved nothing
    finally:
        a.close()
        b.close()
    assert len(quarantined(path)) == 1


@pytest.mark.postgres
def test_a_tracker_on_postgresql_starts_with_a_damaged_spool_and_spools_into_a_new_one(
    pg_store: str, open_tracker: Callable[..., PerformanceTracker], tmp_path: Path
) -> None:
    """The constructor no longer raises: the damaged file is moved aside and the tracker works as usual."""
    (tmp_path / "spool.db").write_bytes(b"not a database " * 400)
    tracker = open_tracker(pg_store, migrate=True)
    iid = tracker.start_iteration("agent-1", 1)
    assert tracker.get_iteration(iid).spooled_changes == 0
    assert len(quarantined(tmp_path / "spool.db")) == 1
    assert spooling_writer(tracker).spool.count() == 0
