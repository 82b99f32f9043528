"""The PostgreSQL store: eventsourcing's recorder plus the `agent_iterations` table, in one schema."""

from __future__ import annotations

import logging
import select
import threading
import zlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, cast
from uuid import UUID

import psycopg
import psycopg_pool
from eventsourcing.persistence import (
    ApplicationRecorder,
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from psycopg import ClientCursor
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from itertrack.adapters.library_hooks import postgres_connect_kwargs, postgres_pool, unretried_select_events
from itertrack.adapters.store.postgres_append import AppendFunction
from itertrack.adapters.store.record_rows import COLUMNS, RECORDS_TABLE, records_of
from itertrack.adapters.store.record_store import IterationRecordStore
from itertrack.adapters.store.shared_pools import Lease, SharedPools
from itertrack.adapters.store.unavailable import CommitOutcomeUnknown
from itertrack.adapters.views.lock import AdvisoryProjectionLock, ProjectionLock, consumer_busy
from itertrack.adapters.views.postgres import TRACKING_TABLE, PostgresViewTables
from itertrack.adapters.views.sql import VIEW_TABLES
from itertrack.domain.model.errors import StoreNotMigratedError

log = logging.getLogger("itertrack")


# What libpq and psycopg say when the server closed a connection the pool still held.
_CLOSED_BY_SERVER = (
    "terminating connection",
    "server closed the connection",
    "connection is closed",
    "the connection is lost",
    "consuming input failed",
    "connection has been closed",
)


_PEER_GONE = getattr(select, "POLLRDHUP", 0) | getattr(select, "POLLHUP", 0) | getattr(select, "POLLERR", 0)


def _closed_by_peer(conn: Any) -> bool:
    """Whether the server (or the network path) already closed this idle pooled connection: a query sent on it
    would fail after sending, leaving the outcome unknown, while it is certain now that nothing was sent.

    One poll(2) of the socket without waiting (under a microsecond). Where POLLRDHUP is missing only a hang-up
    or a socket error is seen.
    """
    if not hasattr(select, "poll"):
        return False  # no poll(2) here: a closed connection is found by the query, as an unknown outcome
    try:
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN | _PEER_GONE)
        return any(events & _PEER_GONE for _, events in poller.poll(0))
    except (OSError, psycopg.Error):
        return False  # the query will fail on its own, before anything is sent


# psycopg's errors as the library's, as its `get_connection` maps them (for the connection `serialised` holds).
_LIBRARY_ERRORS: tuple[tuple[type[psycopg.Error], type[PersistenceError]], ...] = (
    (psycopg.InterfaceError, InterfaceError),
    (psycopg.OperationalError, OperationalError),
    (psycopg.DataError, DataError),
    (psycopg.IntegrityError, IntegrityError),
    (psycopg.InternalError, InternalError),
    (psycopg.ProgrammingError, ProgrammingError),
    (psycopg.NotSupportedError, NotSupportedError),
    (psycopg.DatabaseError, DatabaseError),
    (psycopg.Error, PersistenceError),
)


@contextmanager
def _as_library_errors(conn: Any) -> Iterator[Any]:
    """`conn`, with psycopg's errors raised as the library's (as from `PostgresDatastore.get_connection`)."""
    try:
        yield conn
    except psycopg.Error as e:
        for driver, library in _LIBRARY_ERRORS:
            if isinstance(e, driver):
                raise library(str(e)) from e
        raise


def _may_have_committed(error: psycopg.Error) -> bool:
    """Whether the one-query insert transaction may have committed although `error` was raised.

    An error the server reports about a statement (any SQLSTATE but a connection failure or a shutdown)
    aborted the transaction before its COMMIT ran. A failure with no SQLSTATE (the connection broke: the
    query was sent, or may have been, and no answer came), a connection exception (08) or a server shutdown
    (57P) may have come after the COMMIT ran.
    """
    sqlstate = error.sqlstate
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


class PostgresRecorder(PostgresApplicationRecorder, IterationRecordStore):
    """Writes the iteration record inside the same transaction as the events that mark it saved."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(self.datastore.schema)
        table = Identifier(RECORDS_TABLE)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
                "id uuid PRIMARY KEY, "
                "agent_id text NOT NULL, "
                "iteration_number integer NOT NULL, "
                "strategy jsonb, scan_results jsonb, backtest_results jsonb, analysis jsonb, refinements jsonb, "
                "manual_guidance text, "
                "iteration_status text NOT NULL, "
                "created_at timestamptz NOT NULL)"
            ).format(schema=schema, table=table)
        )
        columns = SQL(", ").join(Identifier(c) for c in COLUMNS)
        self.select_record_statement = SQL("SELECT {columns} FROM {schema}.{table} WHERE id = %s").format(
            schema=schema, table=table, columns=columns
        )
        self.select_record_ids_statement = SQL("SELECT id FROM {schema}.{table}").format(schema=schema, table=table)
        # Our append function (postgres_append.py), created with the tables by `create_table()` (`migrate`).
        self.append = AppendFunction(
            self.datastore.schema, self.events_table_name, self.channel_name, self.datastore.originator_id_type
        )
        self.sql_create_statements.extend(self.append.create_statements)
        self._call_bytes: dict[bool, bytes] = {}  # the call (True: its one-event form), rendered once
        self._lock_bytes: bytes | None = None  # BEGIN and the library's lock statements, rendered once
        # The connection whose transaction holds the events table's lock for this thread (inside `serialised`):
        # this thread's insert goes on it (any other would wait for that lock).
        self._holding = threading.local()
        # One lock key per schema, so migrations of different schemas do not wait on each other.
        self.migrate_lock_key = zlib.crc32(f"itertrack-migrate:{self.datastore.schema}".encode())

    def select_events(self, originator_id: Any, **kwargs: Any) -> Any:
        """The library's select without its retry loop (10 x 0.2 s and a connect timeout each): an
        unreachable store is reported at once, and the tracker answers from its cache or spool."""
        return unretried_select_events()(self, originator_id, **kwargs)

    def in_serialised(self) -> bool:
        return getattr(self._holding, "conn", None) is not None

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Insert the records (one change's, `iteration_record=`, or a group's, `iteration_records=`) and the
        events in one transaction; the events' notification ids in stored-event order (None without events).

        One call of our append function (postgres_append.py), prepared and with binary parameters, on an
        autocommit connection: one round trip once the connection has prepared it (its first call on a
        connection costs one more). The function takes the library's table lock, so notification ids
        follow commit order. Inside `serialised` the call runs in the transaction holding the lock, which a
        COMMIT then ends. Raises the library's `IntegrityError` for a taken (id, version) or record id,
        `CommitOutcomeUnknown` when the connection failed once the commit may have run, and
        `StoreNotMigratedError` when the store lacks the function (migrated by an older release).
        """
        records = records_of(kwargs)
        if not stored_events and not records:
            return None
        one = len(stored_events) == 1 and not records
        params = self.append.one_params(stored_events[0]) if one else self.append.params(stored_events, records)
        holding = getattr(self._holding, "conn", None)
        if holding is not None:
            with _as_library_errors(holding) as conn:
                return self._append_holding(conn, one, params, stored_events)
        with self.datastore.get_connection() as conn:
            if _closed_by_peer(conn):
                # Nothing sent yet: certainly not stored (the caller may retry once on a fresh connection).
                conn.close()
                raise psycopg.OperationalError("server closed the connection before the change was sent")
            try:
                rows = self._call(conn, one, params)
            except psycopg.Error as e:
                if _may_have_committed(e):
                    raise CommitOutcomeUnknown(str(e)) from e
                self._raise_if_not_migrated(e)
                raise
        return self._ids(one, rows, stored_events)

    def _ids(self, one: bool, rows: list[tuple[Any, ...]], stored_events: Sequence[StoredEvent]) -> list[int] | None:
        """The events' notification ids from the call's rows (None for a call without events)."""
        if one:
            return [rows[0][0]]
        return self.append.notification_ids(rows, stored_events) if stored_events else None

    def _append_holding(
        self, conn: Any, one: bool, params: list[Any], stored_events: Sequence[StoredEvent]
    ) -> list[int] | None:
        """The append in the transaction `serialised` holds the lock in, then its COMMIT (two round trips: the
        contended path). A failure before the COMMIT was sent certainly stored nothing: it is rolled back."""
        if _closed_by_peer(conn):
            raise psycopg.OperationalError("server closed the connection before the change was sent")
        try:
            rows = self._call(conn, one, params)
        except BaseException as e:
            if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                with suppress(psycopg.Error):
                    conn.execute(b"ROLLBACK")
            if isinstance(e, psycopg.Error):
                self._raise_if_not_migrated(e)
            raise
        try:
            conn.execute(b"COMMIT")
        except psycopg.Error as e:
            if _may_have_committed(e):
                raise CommitOutcomeUnknown(str(e)) from e
            raise
        return self._ids(one, rows, stored_events)

    def _call(self, conn: Any, one: bool, params: list[Any]) -> list[tuple[Any, ...]]:
        """One call of the append function (`one`: its one-event form): Bind, Execute and Sync in one message once
        prepared."""
        statement = self._call_bytes.get(one)
        if statement is None:
            call = self.append.call_one_statement if one else self.append.call_statement
            statement = self._call_bytes[one] = call.as_bytes(conn)
        cursor = conn.cursor(row_factory=tuple_row)
        try:
            cursor.execute(statement, params, prepare=True, binary=True)
            return cast(list[tuple[Any, ...]], cursor.fetchall())
        except psycopg.Error as e:
            # The server adds where in the function it failed (CONTEXT: the statement's text): the message
            # stays what the statement alone gave, as when the statements were sent themselves.
            text = str(e)
            if "\nCONTEXT:" in text:
                e.args = (text.split("\nCONTEXT:", 1)[0], *e.args[1:])
            raise
        finally:
            cursor.close()

    def _raise_if_not_migrated(self, error: psycopg.Error) -> None:
        """`StoreNotMigratedError` when `error` says the append function does not exist."""
        if isinstance(error, psycopg.errors.UndefinedFunction) and self.append.name in str(error):
            raise StoreNotMigratedError(
                f"the store has no function {self.datastore.schema}.{self.append.name} (it was migrated by an "
                "older release): run `itertrack migrate`"
            ) from error

    def _lock_statement(self, conn: Any) -> bytes:
        """BEGIN and the library's lock statements, composed once (with the connection's quoting)."""
        if self._lock_bytes is None:
            self._lock_bytes = b"; ".join(
                [b"BEGIN", *(cast(Composed, s).as_bytes(conn) for s in self.lock_table_statements)]
            )
        return self._lock_bytes

    def closed_by_server(self, error: BaseException) -> bool:
        cause: BaseException | None = error
        while cause is not None:
            if isinstance(cause, psycopg_pool.PoolTimeout):
                return False  # no connection could be had: the store is away, not one connection
            if isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError):
                text = str(cause).lower()
                return any(sign in text for sign in _CLOSED_BY_SERVER)
            cause = cause.__cause__ or cause.__context__
        return False

    def drop_broken_connections(self) -> None:
        try:
            postgres_pool(
                self.datastore
            ).check()  # tests each idle connection; replaces the broken ones in the background
        except Exception:  # never let housekeeping fail the caller (the forwarder retries anyway)
            log.debug("checking the pool's connections failed", exc_info=True)

    @contextmanager
    def serialised(self, iteration_id: UUID) -> Iterator[None]:
        """Hold the events table's lock (the library's `LOCK TABLE ... IN EXCLUSIVE MODE`, which every insert
        takes) in a transaction while a change that lost a race catches up, re-applies and inserts: no other
        writer can commit meanwhile, so it cannot lose again. This thread's insert runs in that transaction
        and commits it; a block that ends without inserting rolls it back.

        Reads on other connections go on (the lock lets them); other inserts wait, bounded by `lock_timeout`,
        for one catch-up and insert: inserts already take this lock one at a time. Without this, a retry kept
        losing to writers that had not lost yet (1.5-2.2% of 8 contending processes' changes gave up).
        The holder needs a second connection for its reads: with a pool of one (`pool_size=1&max_overflow=0`)
        retries go without the lock (and just back off).
        """
        if postgres_pool(self.datastore).max_size < 2:
            yield
            return
        with self.datastore.get_connection() as conn:
            cursor = ClientCursor(conn)
            try:
                cursor.execute(self._lock_statement(conn))
            finally:
                cursor.close()
            self._holding.conn = conn
            try:
                yield
            finally:
                self._holding.conn = None
                if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                    with suppress(psycopg.Error):
                        conn.execute("ROLLBACK")

    def room_for_listener(self) -> Callable[[], None]:
        """Widen the pool by one connection for a subscription's LISTEN, held for a runner's life (the library's
        subscription takes it from the pool): trackers of a process share the pool, and their read models'
        listeners must not use up the connections their changes need. Returns the call that narrows it again
        (idempotent)."""
        pool = postgres_pool(self.datastore)
        with _RESIZING:
            pool.resize(pool.min_size, pool.max_size + 1)
        given_back = threading.Event()

        def give_back() -> None:
            with _RESIZING:
                if given_back.is_set():
                    return
                given_back.set()
                pool.resize(pool.min_size, max(pool.min_size, pool.max_size - 1))

        return give_back

    def migrate(self) -> None:
        """Create schema and tables under an advisory lock, so many processes may migrate at once."""
        with self._migration_lock():
            with self.datastore.get_connection() as conn:
                conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(self.datastore.schema)))
            self.create_table()
            PostgresViewTables(self.datastore).migrate_views()

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """The migration's advisory lock, held on a connection of its own: the migration itself takes
        connections from the pool, and a pool of one (`pool_size=1&max_overflow=0`) must still migrate."""
        kwargs = {k: v for k, v in postgres_connect_kwargs(self.datastore).items() if k != "row_factory"}
        try:
            conn = psycopg.connect(autocommit=True, **kwargs)  # with the pool's connect_timeout and keepalives
        except psycopg.Error as e:
            raise OperationalError(str(e)) from e
        try:
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (self.migrate_lock_key,))
            except psycopg.Error as e:
                raise OperationalError(str(e)) from e
            yield
        finally:
            # Closing the session releases its advisory lock, so a failed unlock changes nothing.
            with suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.migrate_lock_key,))
            conn.close()

    def missing_tables(self) -> list[str]:
        """Tables of this store that do not exist yet, and its append function (`function NAME`) if missing."""
        wanted = [self.events_table_name, RECORDS_TABLE, TRACKING_TABLE, *VIEW_TABLES]
        with self.datastore.transaction(commit=False) as curs:
            missing = []
            for name in wanted:
                curs.execute("SELECT to_regclass(%s) AS t", (f'"{self.datastore.schema}"."{name}"',))
                row = curs.fetchone()
                if row is None or row["t"] is None:
                    missing.append(name)
            for signature in self.append.signatures:
                curs.execute("SELECT to_regprocedure(%s) AS f", (f'"{self.datastore.schema}".{signature}',))
                row = curs.fetchone()
                if row is None or row["f"] is None:
                    missing.append(f"function {self.append.name}")
                    break
        return missing

    def select_record_ids(self) -> list[UUID]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.select_record_ids_statement)
            return [row["id"] for row in curs.fetchall()]

    def select_iteration_record(self, iteration_id: UUID) -> dict[str, Any] | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.select_record_statement, (iteration_id,))
            row = curs.fetchone()
        return None if row is None else dict(row)


def silent_network_limits(datastore: PostgresDatastore) -> dict[str, int]:
    """libpq settings that end a connection whose network went silent (packets dropped, no refusal) within
    about three connect timeouts, instead of TCP's default of many minutes: keepalive probes on idle
    connections, and a cap on how long sent data may stay unacknowledged. A server that keeps the
    connection but stops answering (a frozen process) is not detected by these."""
    timeout = postgres_pool(datastore).timeout
    limit = 3 * max(1, int(timeout))
    return {
        "connect_timeout": max(1, int(timeout)),
        "keepalives": 1,
        "keepalives_idle": limit,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": limit * 1000,
    }


# Our environment key (the library has none): PostgreSQL's statement_timeout for every connection, in seconds.
POSTGRES_STATEMENT_TIMEOUT = "POSTGRES_STATEMENT_TIMEOUT"
DEFAULT_STATEMENT_TIMEOUT_S = 10


def statement_bounds(statement_timeout_s: int, lock_timeout_s: int) -> dict[str, str]:
    """libpq `options` that give every session a statement and a lock timeout (0: none), so no read or
    write waits unbounded on a slow statement or on a lock another session holds (VACUUM FULL, ALTER
    TABLE, LOCK TABLE); the server cancels the statement with SQLSTATE 57014 or 55P03 (an outage)."""
    return {"options": f"-c statement_timeout={statement_timeout_s * 1000} -c lock_timeout={lock_timeout_s * 1000}"}


# Serialises the read-modify-write of a pool's size (room_for_listener).
_RESIZING = threading.Lock()

# Recorders built in this thread while set: a tracker opened offline must not wait to register type adapters.
_building_offline = threading.local()


def _configure(datastore: PostgresDatastore, statement_timeout: int) -> PostgresDatastore:
    """The library's datastore with our connect arguments (network limits, statement and lock timeouts), and
    type-adapter registration that neither fails nor waits while a tracker is built offline."""
    kwargs = postgres_connect_kwargs(datastore)
    kwargs.update(silent_network_limits(datastore))
    kwargs.update(statement_bounds(statement_timeout, datastore.lock_timeout))
    register = datastore.register_type_adapters

    def register_when_reachable() -> None:
        # The library registers its composite type on every recorder construction; our inserts do not
        # use it, so an unreachable store must not stop a tracker from being built, nor wait for it.
        if getattr(_building_offline, "active", False):
            return
        try:
            register()
        except (OperationalError, InterfaceError):
            log.warning("store unreachable while registering type adapters; continuing without them")

    datastore.register_type_adapters = register_when_reachable  # type: ignore[method-assign]
    return datastore


# One datastore (one psycopg pool) per store and connection settings in this process (shared_pools.py).
SHARED_DATASTORES: SharedPools[PostgresDatastore] = SharedPools()


class PostgresStoreFactory(PostgresFactory):
    """`postgresql://...`: the production store, shared by many processes.

    With `pool_key` (what the composition root passes: the connection settings), the datastore and its pool
    are shared with every other factory of this process given the same key, and `close()` releases this
    factory's hold (the last one closes the pool). Without it the factory has a datastore of its own.
    """

    application_recorder_class = PostgresRecorder

    def __init__(self, env: Any, *, pool_key: Hashable | None = None) -> None:
        super().__init__(env)
        statement_timeout = int(self.env.get(POSTGRES_STATEMENT_TIMEOUT) or DEFAULT_STATEMENT_TIMEOUT_S)
        self.offline_at_start = False
        self._lease: Lease[PostgresDatastore] | None = None
        own = self.datastore  # the library's, not connected yet (its pool opens on first use)
        if pool_key is None:
            _configure(own, statement_timeout)
            return
        self._lease = SHARED_DATASTORES.acquire(
            pool_key, lambda: _configure(own, statement_timeout), lambda datastore: datastore.close()
        )
        self.datastore = self._lease.resource
        if self.datastore is not own:
            own.close()

    def probe(self) -> None:
        """Open one connection (as the pool would) and close it, within `connect_timeout`.

        Raises the driver's `psycopg.Error`, with the server's reason, when the store does not answer or
        refuses this role or database; the pool would only say that no connection came in time.
        """
        kwargs = {k: v for k, v in postgres_connect_kwargs(self.datastore).items() if k != "row_factory"}
        psycopg.connect(autocommit=True, **kwargs).close()

    def opened_offline(self) -> None:
        """The store did not answer at start: build the tracker without asking it again (its forwarder probes)."""
        self.offline_at_start = True

    def read_model_views(self) -> PostgresViewTables:
        """The read-model tables in this schema; an older shape is an error naming `itertrack migrate`."""
        views = PostgresViewTables(self.datastore)
        if views.outdated_columns() or views.missing_view_tables():
            raise StoreNotMigratedError("the read-model tables are from an older version: run `itertrack migrate`")
        return views

    def projection_lock(self) -> ProjectionLock:
        """A session advisory lock keyed by the schema."""
        return AdvisoryProjectionLock(self.datastore)

    def consumer_lock(self, name: str) -> ProjectionLock:
        """The lock of one named consumer of the feed: a session advisory lock keyed by the schema and the name."""
        return AdvisoryProjectionLock(self.datastore, purpose=f"itertrack-consumer:{name}", busy=consumer_busy(name))

    def application_recorder(self) -> ApplicationRecorder:
        prefix = self.env.name.lower() or "stored"
        _building_offline.active = self.offline_at_start
        try:
            return PostgresRecorder(datastore=self.datastore, events_table_name=prefix + "_events")
        finally:
            _building_offline.active = False

    def close(self) -> None:
        """Close the datastore, or release this factory's hold on a shared one (idempotent)."""
        if self._lease is None:
            super().close()
        else:
            self._lease.release()
