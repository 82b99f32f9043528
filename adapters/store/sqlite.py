"""The SQLite store (embedded default): eventsourcing's recorder plus the `agent_iterations` table."""

from __future__ import annotations

import json
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore, SQLiteFactory

from itertrack.adapters.library_hooks import sqlite_pool
from itertrack.adapters.store.record_rows import COLUMNS, JSON_COLUMNS, RECORDS_TABLE, records_of
from itertrack.adapters.store.record_store import IterationRecordStore
from itertrack.adapters.store.sqlite_file import GuardedSQLiteDatastore
from itertrack.adapters.views.lock import FileProjectionLock, NoProjectionLock, ProjectionLock, consumer_busy
from itertrack.adapters.views.sql import VIEW_TABLES
from itertrack.adapters.views.sqlite import SQLiteViewTables
from itertrack.adapters.views.subscriptions import PollingSubscription

_CREATE_RECORDS = (
    f"CREATE TABLE IF NOT EXISTS {RECORDS_TABLE} ("
    "id TEXT PRIMARY KEY, "
    "agent_id TEXT NOT NULL, "
    "iteration_number INTEGER NOT NULL, "
    "strategy TEXT, scan_results TEXT, backtest_results TEXT, analysis TEXT, refinements TEXT, "
    "manual_guidance TEXT, "
    "iteration_status TEXT NOT NULL, "
    "created_at TEXT NOT NULL)"
)
# Built from module constants only; values are always bound parameters.
_INSERT_RECORD = f"INSERT INTO {RECORDS_TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"  # noqa: S608
_SELECT_RECORD_IDS = f"SELECT id FROM {RECORDS_TABLE}"  # noqa: S608
_SELECT_RECORD = f"SELECT {', '.join(COLUMNS)} FROM {RECORDS_TABLE} WHERE id = ?"  # noqa: S608


class SQLiteRecorder(SQLiteApplicationRecorder, IterationRecordStore):
    """Writes the iteration record inside the same transaction as the events that mark it saved."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name)
        self._subscriptions: weakref.WeakSet[PollingSubscription] = weakref.WeakSet()
        # Re-entrant: an insert inside `serialised` runs in the write transaction that block opened.
        self._writer_lock = threading.RLock()
        self._writer_conn: sqlite3.Connection | None = None
        self._serialising = threading.local()  # `serialising` is True in a thread inside `serialised`

    def in_serialised(self) -> bool:
        return bool(getattr(self._serialising, "serialising", False))

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> PollingSubscription:
        """Follow the log from after `gt` (eventsourcing 9.5.6 has no SQLite subscription)."""
        subscription = PollingSubscription(self, gt=gt, topics=topics)
        self._subscriptions.add(subscription)
        return subscription

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if sqlite_pool(self.datastore).is_sqlite_memory_mode:
            # A shared-cache memory database needs the library pool's reader/writer interlock.
            notification_ids = super().insert_events(stored_events, **kwargs)
        else:
            notification_ids = self._insert_on_writer(stored_events, **kwargs)
        if len(self._subscriptions):
            for subscription in list(self._subscriptions):
                subscription.notify()
        return notification_ids

    def _insert_on_writer(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """One transaction on this recorder's own writer connection.

        The library's pool and transaction context managers cost about as much as the insert itself
        on this path; the SQL, the journal and the synchronous setting are the same.
        """
        with self._writer_lock:
            if self._writer_conn is None:
                self._check_file("the change was not saved")  # before connecting: connecting would create a file
            conn = self._writer()
            try:
                if not conn.in_transaction:  # else inside `serialised`: its write transaction, this thread's
                    conn.execute("BEGIN")
                notification_ids = self._insert_events(SQLiteCursor(conn.cursor()), stored_events, **kwargs)
                self._check_file("the change was not saved")  # raised before the commit: rolled back
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.IntegrityError):
                    raise IntegrityError(e) from e
                if isinstance(e, sqlite3.OperationalError):
                    raise OperationalError(e) from e
                if isinstance(e, sqlite3.Error):
                    raise PersistenceError(e) from e
                raise
            self._check_file("the change was written to the file no longer at that path")
            return notification_ids

    def _check_file(self, refused: str) -> None:
        """`StoreReplacedError` if the store's file is gone or replaced (see `sqlite_file`)."""
        if isinstance(self.datastore, GuardedSQLiteDatastore):
            self.datastore.check_file(refused)

    @contextmanager
    def serialised(self, iteration_id: UUID) -> Iterator[None]:
        """Hold the database's write lock (`BEGIN IMMEDIATE`) while a change that lost a race re-loads,
        re-applies and inserts: no other writer can commit meanwhile, so it cannot lose again.

        The insert commits the transaction; a block that ends without inserting rolls it back. Waiting for
        the lock is bounded by the store's `lock_timeout` (then `StoreUnavailableError`).
        """
        if sqlite_pool(self.datastore).is_sqlite_memory_mode:
            yield  # one process, whose writers the tracker's own locks serialise
            return
        with self._writer_lock:
            if self._writer_conn is None:
                self._check_file("the change was not saved")  # before connecting: connecting would create a file
            conn = self._writer()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise OperationalError(e) from e
            self._serialising.serialising = True
            try:
                yield
            finally:
                self._serialising.serialising = False
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    def _writer(self) -> sqlite3.Connection:
        if self._writer_conn is None:
            pool = sqlite_pool(self.datastore)
            conn = sqlite3.connect(
                pool.db_name,
                uri=True,
                check_same_thread=False,
                isolation_level=None,
                timeout=pool.lock_timeout or 5,
            )
            conn.row_factory = sqlite3.Row
            self._writer_conn = conn
        return self._writer_conn

    def close_writer(self) -> None:
        """Close the writer connection (the factory's close calls this)."""
        with self._writer_lock:
            if self._writer_conn is not None:
                self._writer_conn.close()
                self._writer_conn = None

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), _CREATE_RECORDS]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        for record in records_of(kwargs):  # one change's record, or each of a group's
            assert record.id is not None
            assert record.created_at is not None
            c.execute(
                _INSERT_RECORD,
                (
                    record.id.hex,  # the events table's own form, so the two join on one id
                    record.agent_id,
                    record.iteration_number,
                    *(
                        None if getattr(record, col) is None else json.dumps(getattr(record, col))
                        for col in JSON_COLUMNS
                    ),
                    record.manual_guidance,
                    record.iteration_status,
                    record.created_at.isoformat(),
                ),
            )
        return super()._insert_events(c, stored_events, **kwargs)

    def migrate(self) -> None:
        self.create_table()
        SQLiteViewTables(self.datastore).migrate_views()

    def missing_tables(self) -> list[str]:
        """Tables of this store that do not exist yet."""
        wanted = [self.events_table_name, RECORDS_TABLE, "tracking", *VIEW_TABLES]
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT name FROM sqlite_master WHERE type='table'")
            found = {row[0] for row in c.fetchall()}
        return [t for t in wanted if t not in found]

    def select_record_ids(self) -> list[UUID]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(_SELECT_RECORD_IDS)
            return [UUID(row[0]) for row in c.fetchall()]

    def select_iteration_record(self, iteration_id: UUID) -> dict[str, Any] | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(_SELECT_RECORD, (iteration_id.hex,))
            row = c.fetchone()
        if row is None:
            return None
        data = dict(zip(COLUMNS, tuple(row), strict=True))
        for col in JSON_COLUMNS:
            data[col] = None if data[col] is None else json.loads(data[col])
        data["id"] = UUID(data["id"])
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        return data


class SQLiteStoreFactory(SQLiteFactory):
    """`sqlite:///path.db`: one file, WAL journal, shared safely by processes on one machine.

    Every read and write raises `StoreReplacedError` once the path no longer names the file first opened
    (deleted, renamed away, replaced; see `sqlite_file`).
    """

    application_recorder_class = SQLiteRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        # The library's datastore, swapped (before any connection) for one that refuses a replaced file.
        plain = self.datastore
        pool = sqlite_pool(plain)
        self.datastore = GuardedSQLiteDatastore(
            pool.db_name,
            lock_timeout=pool.lock_timeout,
            single_row_tracking=plain.single_row_tracking,
            originator_id_type=plain.originator_id_type,
        )
        plain.close()
        self._recorders: list[SQLiteRecorder] = []

    def application_recorder(self) -> ApplicationRecorder:
        recorder = SQLiteRecorder(datastore=self.datastore)
        self._recorders.append(recorder)
        return recorder

    def read_model_views(self) -> SQLiteViewTables:
        """The read-model tables in this file, brought up to this version's shape (single writer, cheap)."""
        views = SQLiteViewTables(self.datastore)
        views.migrate_views()
        return views

    def projection_lock(self) -> ProjectionLock:
        """A file lock beside the database (none for an in-memory database, which no other process sees)."""
        db_name = sqlite_pool(self.datastore).db_name
        if "mode=memory" in db_name or ":memory:" in db_name:
            return NoProjectionLock()
        return FileProjectionLock(f"{db_name}.projection-lock")

    def consumer_lock(self, name: str) -> ProjectionLock:
        """The lock of one named consumer of the feed: a file beside the database (`name` matches CONSUMER_NAME,
        so it is a safe file-name part); none for an in-memory database."""
        db_name = sqlite_pool(self.datastore).db_name
        if "mode=memory" in db_name or ":memory:" in db_name:
            return NoProjectionLock()
        return FileProjectionLock(f"{db_name}.consumer-{name}.lock", busy=consumer_busy(name))

    def close(self) -> None:
        for recorder in self._recorders:
            recorder.close_writer()
        super().close()
