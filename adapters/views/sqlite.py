"""The read models in the SQLite store file, beside the events."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder

from itertrack.adapters.views.exact_totals import register, to_db
from itertrack.adapters.views.sql import APPLICATION_NAME, SQLITE_TYPES, ViewStatements
from itertrack.adapters.views.tables import ViewTables


class SQLiteViewTables(ViewTables, SQLiteTrackingRecorder):
    """Views as SQLite tables; ids in the events table's hex form, times as UTC ISO-8601 text."""

    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore)
        self.statements = ViewStatements(prefix="", types=SQLITE_TYPES, placeholder="?")
        self.cas_insert = "INSERT INTO tracking (application_name, notification_id) VALUES (?, ?)"
        self.cas_update = (
            "UPDATE tracking SET notification_id = ? WHERE application_name = ? AND notification_id = ? "
            "RETURNING notification_id"
        )
        self.cas_reset = "DELETE FROM tracking WHERE application_name = ?"
        self.select_position = "SELECT notification_id FROM tracking WHERE application_name = ?"

    @contextmanager
    def _transaction(self, *, commit: bool) -> Iterator[Any]:
        with self.datastore.transaction(commit=commit) as c:
            register(c.sqlite_cursor.connection)  # exact totals past SQLite's 64-bit integers
            yield c

    def _lock_views(self, c: Any) -> None:
        """Nothing to take: SQLite has one writer, and a views transaction's first statement is a write (the
        tracking row), which takes the database's write lock until the transaction ends."""

    def _where_in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({', '.join('?' for _ in values)})", list(values)

    def _has_column(self, table: str, column: str) -> bool:
        with self._transaction(commit=False) as c:
            c.execute("SELECT name FROM pragma_table_info(?)", (table,))
            return column in {row[0] for row in c.fetchall()}

    def _has_table(self, table: str) -> bool:
        with self._transaction(commit=False) as c:
            c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
            return c.fetchone() is not None

    def _create_tracking_table(self) -> None:
        self.create_table()

    def _max_position(self) -> int | None:
        return self.max_tracking_id(APPLICATION_NAME)

    def _db_id(self, value: UUID) -> Any:
        return value.hex

    def _db_total(self, value: int | float) -> Any:
        return to_db(value)

    def _db_time(self, value: datetime | None) -> Any:
        return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


# The store package still imports the old name; the composition root will import `SQLiteViewTables` instead.
