"""The spool as an SQLite file beside the process (WAL, FULL synchronous: a spooled change is on disk)."""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from filelock import FileLock, Timeout

from itertrack.adapters.private_files import PRIVATE_MODE, create_private
from itertrack.adapters.spool.port import Spool, SpooledChange, SpoolEntry, SpoolStatus, SpoolUnusableError
from itertrack.adapters.spool.quarantine import (
    SpoolDamagedError,
    file_identity,
    is_damage,
    probe,
    quarantine,
    quoted,
    read_rows,
)
from itertrack.domain.model.changes import DeferredChange
from itertrack.domain.model.errors import StoreUnavailableError
from itertrack.domain.model.records import IterationRecord

log = logging.getLogger("itertrack")
# How long opening the spool waits for another process that is setting the same file up.
_SETUP_WAIT_S = 10.0
# Room held back beside the spool so a full file system can still be drained (`_keep_reserve`).
_RESERVE_BYTES = 128 * 1024
# The events column of a deferred change: not a list, so a release from before deferred changes
# existed fails on the row (and retries) instead of forwarding it as "no events" and forgetting it.
_NO_EVENTS_YET = "null"


class SQLiteSpool(Spool):
    """Changes as rows: the events' versions, topics and states, and the record as JSON."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        # Opened on first need: a tracker that never spools leaves no file behind.
        self._db: sqlite3.Connection | None = None
        self._opened: tuple[int, int] | None = None  # which file the connection has open (device, inode)
        self._absolute = os.path.abspath(self.path)  # what the name meant when opened, whatever chdir follows
        self._damage_told = False

    def _connect(self) -> sqlite3.Connection:
        """The file's connection, ready; a damaged file is moved aside first and a new one started.

        Raises `sqlite3.Error` for what is not damage (disk full, read-only, locked), `StoreUnavailableError`
        when a damaged file cannot be moved aside.
        """
        create_private(self.path)
        found = file_identity(self.path)
        try:
            probe(self.path)
        except (sqlite3.DatabaseError, SpoolDamagedError) as e:
            if isinstance(e, sqlite3.DatabaseError) and not is_damage(e):
                raise
            self._quarantine(found, e)
        conn = self._open()
        self._absolute = os.path.abspath(self.path)
        self._opened = file_identity(self._absolute)
        self._keep_reserve()
        return conn

    def _reserve(self) -> Path:
        return Path(f"{self._absolute}.reserve")

    def _keep_reserve(self) -> None:
        """Hold back room on the spool's file system for draining it: a file of zeros beside the spool.

        Deleting forwarded rows needs a few free pages (the WAL grows before space comes back); on a file
        system that filled up during an outage, `remove` gives this room back and the spool drains instead
        of keeping its iterations' changes waiting for good. Made when the spool opens and after a drain,
        when there is room; never raises.
        """
        reserve = self._reserve()
        if reserve.exists():
            return
        try:
            fd = os.open(reserve, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
        except OSError:
            return
        try:
            os.write(fd, bytes(_RESERVE_BYTES))
            os.fsync(fd)
        except OSError:
            reserve.unlink(missing_ok=True)  # no room for it now: the next drain tries again
        finally:
            os.close(fd)

    def _freeing(self, statement: str, parameters: tuple[object, ...]) -> sqlite3.Cursor:
        """Run a statement that removes or marks rows; on a full file system give back the reserve, once."""
        try:
            with self._using() as db:
                return db.execute(statement, parameters)
        except SpoolUnusableError as e:
            full = isinstance(e.__cause__, sqlite3.Error) and e.__cause__.sqlite_errorcode == sqlite3.SQLITE_FULL
            if not full or self._db is None or not self._reserve().exists():
                raise
            log.warning("the spool's file system is full: giving back the room held for draining %s", self.path)
            self._reserve().unlink(missing_ok=True)
        with self._using() as db:
            return db.execute(statement, parameters)

    def _quarantine(self, found: tuple[int, int] | None, damage: Exception) -> None:
        try:
            moved = quarantine(self.path, found)
        except OSError as e:
            raise SpoolUnusableError(
                f"the spool {self.path} is damaged ({damage}) and cannot be moved aside: {e}"
            ) from damage
        if moved is not None:
            log.warning(
                "the spool %s is damaged (%s): moved aside to %s, starting a new one; "
                "`itertrack spool recover %s` forwards what can still be read from it",
                self.path,
                damage,
                moved,
                moved,
            )

    def _open(self) -> sqlite3.Connection:
        # Processes sharing one spool file may open it at the same moment (the first change of an outage):
        # switching to WAL and creating or upgrading the table take locks SQLite does not wait for
        # ("database is locked" at once), so a set-up that meets another's lock is tried again, with a
        # jittered pause, for up to 10 s.
        deadline = time.monotonic() + _SETUP_WAIT_S
        while True:
            try:
                return self._set_up()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.05))

    def _set_up(self) -> sqlite3.Connection:
        create_private(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=_SETUP_WAIT_S)
        try:
            return self._schema(conn)
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _schema(conn: sqlite3.Connection) -> sqlite3.Connection:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # every spooled change is on disk when add() returns
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spooled_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "iteration_id TEXT NOT NULL, events TEXT NOT NULL, record TEXT, stuck TEXT, deferred TEXT, command TEXT, "
            "base TEXT)"
        )
        columns = {row[1] for row in conn.execute("PRAGMA table_info(spooled_changes)")}
        # Columns added since the first release: a file written before them gains them here.
        for column in ("deferred", "command", "base"):
            if column not in columns:
                try:
                    conn.execute(f"ALTER TABLE spooled_changes ADD COLUMN {column} TEXT")
                except sqlite3.OperationalError as e:
                    if "duplicate column" not in str(e):  # another process upgraded it a moment ago
                        raise
        conn.execute("CREATE INDEX IF NOT EXISTS spooled_changes_iteration ON spooled_changes (iteration_id)")
        return conn

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The file's connection under the lock; an unusable spool (disk full, damaged) is a typed error.

        A file damaged or moved aside while this process has it open is not replaced here: the host's
        cached iterations may count on changes in it. Each call raises until the process restarts,
        and the next open moves the damaged file aside.
        """
        with self._lock:
            try:
                if self._db is None:
                    self._db = self._connect()
                elif file_identity(self._absolute) != self._opened:
                    raise SpoolUnusableError(
                        f"the spool {self.path} was moved aside or replaced while in use (damaged?): "
                        "restart the process; `itertrack spool status` lists quarantined files"
                    )
                yield self._db
            except sqlite3.Error as e:
                if is_damage(e) and not self._damage_told:
                    self._damage_told = True  # once: the forwarder meets it at every retry
                    log.warning(
                        "the spool %s is damaged while in use (%s); the next start moves it aside", self.path, e
                    )
                raise SpoolUnusableError(f"the spool {self.path} cannot be used: {e}") from e

    def _exists(self) -> bool:
        return self._db is not None or Path(self.path).exists()

    def add(
        self,
        iteration_id: UUID,
        events: Sequence[StoredEvent],
        record: IterationRecord | None,
        command: DeferredChange | None = None,
        base: UUID | None = None,
    ) -> None:
        encoded = json.dumps(
            [[e.originator_version, e.topic, base64.b64encode(e.state).decode()] for e in events], separators=(",", ":")
        )
        with self._using() as db:
            db.execute(
                "INSERT INTO spooled_changes (iteration_id, events, record, command, base) VALUES (?, ?, ?, ?, ?)",
                (
                    str(iteration_id),
                    encoded,
                    None if record is None else record.model_dump_json(),
                    None if command is None else command.model_dump_json(),
                    None if base is None else str(base),
                ),
            )

    def add_deferred(self, iteration_id: UUID, deferred: DeferredChange, record: IterationRecord | None) -> None:
        with self._using() as db:
            db.execute(
                "INSERT INTO spooled_changes (iteration_id, events, record, deferred) VALUES (?, ?, ?, ?)",
                (
                    str(iteration_id),
                    _NO_EVENTS_YET,
                    None if record is None else record.model_dump_json(),
                    deferred.model_dump_json(),
                ),
            )

    def counts(self, iteration_id: UUID) -> tuple[int, int]:
        if not self._exists():
            return 0, 0
        with self._using() as db:
            row = db.execute(
                "SELECT count(*), count(deferred) FROM spooled_changes WHERE iteration_id = ? AND stuck IS NULL",
                (str(iteration_id),),
            ).fetchone()
        return int(row[0]), int(row[1])

    def waiting(self, limit: int, after: int = 0, *, movable: bool = False) -> list[SpooledChange]:
        if not self._exists():
            return []
        with self._using() as db:
            rows = db.execute(
                "SELECT id, iteration_id, events, record, stuck, deferred, command, base FROM spooled_changes "
                "WHERE id > ? AND (stuck IS NULL OR NOT ?) ORDER BY id LIMIT ?",
                (after, movable, limit),
            ).fetchall()
        changes = [_decoded(row) for row in rows]
        unreadable = [(c.stuck, c.id) for c, row in zip(changes, rows, strict=True) if c.stuck and not row[4]]
        if unreadable:
            # Kept as stuck in the file too, so the forwarder counts it as waiting for a person, not for it.
            with self._using() as db:
                db.executemany("UPDATE spooled_changes SET stuck = ? WHERE id = ?", unreadable)
        return changes

    def remove(self, *change_ids: int) -> None:
        self._freeing(
            "DELETE FROM spooled_changes WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(change_ids),)
        )

    def mark_stuck(self, change_id: int, reason: str) -> None:
        self._freeing("UPDATE spooled_changes SET stuck = ? WHERE id = ?", (reason, change_id))

    def unstick(self, change_id: int) -> bool:
        with self._using() as db:
            cursor = db.execute(
                "UPDATE spooled_changes SET stuck = NULL WHERE id = ? AND stuck IS NOT NULL", (change_id,)
            )
        return cursor.rowcount == 1

    def count(self, iteration_id: UUID | None = None) -> int:
        if iteration_id is not None:
            return self.counts(iteration_id)[0]
        return self._count(stuck=False)

    def stuck_count(self) -> int:
        return self._count(stuck=True)

    def _count(self, *, stuck: bool) -> int:
        if not self._exists():
            return 0
        with self._using() as db:
            row = db.execute("SELECT count(*) FROM spooled_changes WHERE (stuck IS NOT NULL) = ?", (stuck,)).fetchone()
        return int(row[0])

    def status(self) -> SpoolStatus:
        entries = tuple(
            SpoolEntry(
                id=c.id,
                iteration_id=c.iteration_id,
                versions=tuple(e.originator_version for e in c.events),
                deferred=None if c.deferred is None else c.deferred.change.describe(),
                with_record=c.record is not None,
                stuck=c.stuck,
            )
            for c in self.waiting(10**9)
        )
        stuck = sum(e.stuck is not None for e in entries)
        return SpoolStatus(path=self.path, waiting=len(entries) - stuck, stuck=stuck, entries=entries)

    @contextmanager
    def forwarding(self) -> Iterator[bool]:
        """An exclusive lock on `<spool>.forwarding` (filelock: released by the OS if the process dies)."""
        if not self._exists():
            yield True  # nothing to forward, and no directory to put a lock file in
            return
        lock = FileLock(f"{self.path}.forwarding", mode=PRIVATE_MODE, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            yield False
            return
        except OSError as e:
            raise SpoolUnusableError(f"the spool {self.path} cannot be used: {e}") from e
        try:
            yield True
        finally:
            lock.release()

    def reclaim(self) -> None:
        """Give back the disk space forwarded changes left free: VACUUM when at least half the file is free
        pages, then truncate the WAL. Changes still in the file (stuck ones, or some another process just
        added) are kept; the cost is O(what remains).

        Never raises (housekeeping must not stop forwarding): a file that cannot be vacuumed now (another
        process reading it, a full disk) stays as large as it was until the next drain, which tries again.
        """
        if not self._exists():
            return
        try:
            with self._using() as db:
                pages = db.execute("PRAGMA page_count").fetchone()[0]
                free = db.execute("PRAGMA freelist_count").fetchone()[0]
                if free and free * 2 >= pages:
                    db.execute("VACUUM")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except StoreUnavailableError as e:
            log.info("the spool %s was not vacuumed this time: %s", self.path, e)
        self._keep_reserve()

    def _columns(self) -> list[str]:
        with self._using() as db:
            return [row[1] for row in db.execute("PRAGMA table_info(spooled_changes)") if row[1] != "id"]

    def _append_rows(self, columns: list[str], rows: Sequence[Sequence[object]]) -> int:
        """Add rows (values for `columns`) after those waiting, in one durable transaction; how many were added.

        A row missing a required value (read from a damaged file) is left out.
        """
        names = ", ".join(quoted(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        added = 0
        with self._using() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    # Column names from this file's own table_info; the values are bound.
                    cursor = db.execute(f"INSERT OR IGNORE INTO spooled_changes ({names}) VALUES ({marks})", row)  # noqa: S608
                    added += cursor.rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return added

    def take_over(self, other: str | Path) -> int:
        """Move every change waiting in the spool file `other` after those waiting here, in order; how many moved.

        `other` is emptied, not removed (a process of an older release may have it open). Its rows are
        read and deleted under its write lock, after this file committed them: a crash in between leaves
        them in both files, and forwarding, which is idempotent (stored versions, event ids), stores them
        once. A damaged `other` is quarantined like any spool. Raises `StoreUnavailableError` when either
        file cannot be used now, or `other` was written by a newer release (then nothing moved).
        """
        columns = self._columns()
        source = SQLiteSpool(other)
        try:
            with source._using() as src:
                theirs = [row[1] for row in src.execute("PRAGMA table_info(spooled_changes)") if row[1] != "id"]
                unknown = sorted(set(theirs) - set(columns))
                if unknown:
                    raise StoreUnavailableError(
                        f"the spool {other} has columns {unknown} this release does not know: left as it is"
                    )
                src.execute("BEGIN IMMEDIATE")
                try:
                    names = ", ".join(quoted(c) for c in theirs)
                    # Column names from the file's own table_info.
                    rows = src.execute(f"SELECT {names} FROM spooled_changes ORDER BY id").fetchall()  # noqa: S608
                    if rows:
                        self._append_rows(theirs, rows)
                        src.execute("DELETE FROM spooled_changes")
                    src.execute("COMMIT")
                except BaseException:
                    src.execute("ROLLBACK")
                    raise
        finally:
            source.close()
        return len(rows)

    def recover(self, damaged: str | Path) -> tuple[int, int]:
        """Add what can still be read from a damaged (quarantined) spool file after the changes waiting here.

        Returns (rows read, rows added). The damaged file is only read. Running it twice adds the rows
        twice, which is harmless: forwarding recognises a change the store already holds (its versions,
        or its event id) and only removes it. Rows are read in id order up to the first fault; for
        more, run `sqlite3 DAMAGED .recover | sqlite3 REPAIRED.db` and recover from REPAIRED.db.
        Raises `StoreUnavailableError` when the file has no readable spool table, or this spool cannot be used.
        """
        columns = self._columns()
        try:
            rows = list(read_rows(damaged, columns))
        except sqlite3.Error as e:
            raise StoreUnavailableError(f"nothing can be read from {damaged}: {e}") from e
        return len(rows), self._append_rows(columns, rows)

    def close(self) -> None:
        """Close the file (if it was opened)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _decoded(row: tuple[int, str, str, str | None, str | None, str | None, str | None, str | None]) -> SpooledChange:
    """One row as a change; a row that cannot be read (edited by hand, written by another release) comes back
    stuck, with the reason and no content, so a person can see it and discard it."""
    change_id, iteration_id, events, record, stuck, deferred, command, base = row
    try:
        iid = UUID(iteration_id)
        stored = tuple(
            StoredEvent(originator_id=iid, originator_version=v, topic=t, state=base64.b64decode(s))
            for v, t, s in json.loads(events) or ()
        )
        return SpooledChange(
            id=change_id,
            iteration_id=iid,
            events=stored,
            record=None if record is None else IterationRecord.model_validate_json(record),
            stuck=stuck,
            deferred=None if deferred is None else DeferredChange.model_validate_json(deferred),
            command=None if command is None else DeferredChange.model_validate_json(command),
            base=None if base is None else UUID(base),
        )
    except Exception as e:  # whatever the damage, the spool must stay usable
        try:
            iid = UUID(iteration_id)
        except (ValueError, TypeError, AttributeError):
            iid = UUID(int=0)
        reason = f"unreadable row ({type(e).__name__}): {str(e).splitlines()[0] if str(e) else ''}"
        return SpooledChange(id=change_id, iteration_id=iid, events=(), record=None, stuck=reason)
