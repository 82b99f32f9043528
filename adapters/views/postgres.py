"""The read models in the PostgreSQL store's schema, beside the events."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder

from itertrack.adapters.store.postgres_failures import driver_error
from itertrack.adapters.views.sql import APPLICATION_NAME, POSTGRES_TYPES, ViewStatements
from itertrack.adapters.views.tables import ViewTables

TRACKING_TABLE = "itertrack_read_models_tracking"


class PostgresViewTables(ViewTables, PostgresTrackingRecorder):
    """Views as PostgreSQL tables in the store's schema (validated as an identifier by the URL parser)."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name=TRACKING_TABLE)
        schema = f'"{self.datastore.schema}".'
        self.statements = ViewStatements(prefix=schema, types=POSTGRES_TYPES, placeholder="%s")
        tracking = f"{schema}{TRACKING_TABLE}"
        self.cas_insert = f"INSERT INTO {tracking} (application_name, notification_id) VALUES (%s, %s)"
        self.cas_update = (
            f"UPDATE {tracking} SET notification_id = %s WHERE application_name = %s AND notification_id = %s "
            "RETURNING notification_id"
        )
        self.cas_reset = f"DELETE FROM {tracking} WHERE application_name = %s"
        self.select_position = f"SELECT notification_id FROM {tracking} WHERE application_name = %s"  # fixed names
        # The views' write lock: a transaction-level advisory lock keyed by the schema, so every writer of
        # these views, in any process, queues on it before touching a row (it is not the lock that keeps one
        # `itertrack project` per store, which is a session lock on another key: see views/lock.py).
        self.write_lock_key = zlib.crc32(f"itertrack-read-models-write:{self.datastore.schema}".encode())

    def _transaction(self, *, commit: bool) -> AbstractContextManager[Any]:
        return self.datastore.transaction(commit=commit)

    @contextmanager
    def _snapshot_transaction(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield curs

    def _lock_views(self, c: Any) -> None:
        c.execute("SELECT pg_advisory_xact_lock(%s)", (self.write_lock_key,))

    def _transient(self, error: BaseException) -> bool:
        """A deadlock (40P01), a serialization failure (40001) or any other 'transaction rollback' (class 40)."""
        cause = driver_error(error)
        return cause is not None and (cause.sqlstate or "").startswith("40")

    def _where_in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(%s)", [list(values)]

    def _has_column(self, table: str, column: str) -> bool:
        name = table.rsplit(".", 1)[-1].strip('"')
        with self._transaction(commit=False) as c:
            c.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                "AND column_name = %s",
                (self.datastore.schema, name, column),
            )
            return c.fetchone() is not None

    def _has_table(self, table: str) -> bool:
        with self._transaction(commit=False) as c:
            c.execute("SELECT to_regclass(%s) AS t", (table,))
            row = c.fetchone()
            return row is not None and row["t"] is not None

    def _create_tracking_table(self) -> None:
        self.create_table()

    def _max_position(self) -> int | None:
        position: int | None = self.max_tracking_id(APPLICATION_NAME)
        return position


# The store package still imports the old name; the composition root will import `PostgresViewTables` instead.
