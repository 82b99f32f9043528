"""The PostgreSQL store: eventsourcing's recorder plus the `agent_iterations` table, in one schema."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from itertrack.adapters.record_rows import COLUMNS, JSON_COLUMNS, RECORDS_TABLE, record_of
from itertrack.adapters.view_sql import VIEW_TABLES
from itertrack.adapters.views_postgres import TRACKING_TABLE, PostgresReadModelView
from itertrack.domain.ports import IterationRecordStore


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
        self.insert_record_statement = SQL("INSERT INTO {schema}.{table} ({columns}) VALUES ({values})").format(
            schema=schema, table=table, columns=columns, values=SQL(", ").join(SQL("%s") for _ in COLUMNS)
        )
        self.select_record_statement = SQL("SELECT {columns} FROM {schema}.{table} WHERE id = %s").format(
            schema=schema, table=table, columns=columns
        )
        self.select_record_ids_statement = SQL("SELECT id FROM {schema}.{table}").format(schema=schema, table=table)
        # One lock key per schema, so migrations of different schemas do not wait on each other.
        self.migrate_lock_key = zlib.crc32(f"itertrack-migrate:{self.datastore.schema}".encode())

    def _insert_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        record = record_of(kwargs)
        if record is not None:
            curs.execute(
                self.insert_record_statement,
                (
                    record.id,
                    record.agent_id,
                    record.iteration_number,
                    *(None if getattr(record, col) is None else Jsonb(getattr(record, col)) for col in JSON_COLUMNS),
                    record.manual_guidance,
                    record.iteration_status,
                    record.created_at,
                ),
            )
        super()._insert_events(curs, stored_events, **kwargs)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Insert the record (if any) and the events in one pipelined transaction that any error rolls back.

        eventsourcing 9.5.6 catches exceptions inside its transaction block and re-raises them after the
        commit, so a non-database error raised after the record insert would commit the record alone.
        Here the exception leaves the transaction block (rolling it back) and is caught outside it.
        """
        exc: Exception | None = None
        notification_ids: Sequence[int] | None = None
        with self.datastore.get_connection() as conn:
            with conn.pipeline() as pipeline:
                try:
                    with conn.transaction():
                        with conn.cursor() as curs:
                            self._insert_events(curs, stored_events, **kwargs)
                        if stored_events:
                            with conn.cursor() as curs:
                                self._insert_stored_events(curs, stored_events, **kwargs)
                                # Sync now, so a key conflict raises IntegrityError here.
                                pipeline.sync()
                                notification_ids = self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
                except Exception as e:
                    # Raised outside the pipeline block, to avoid psycopg's pipeline warning.
                    exc = e
            if exc:
                raise exc
        return notification_ids

    def migrate(self) -> None:
        """Create schema and tables under an advisory lock, so many processes may migrate at once."""
        with self.datastore.get_connection() as conn:
            conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(self.datastore.schema)))
            conn.execute("SELECT pg_advisory_lock(%s)", (self.migrate_lock_key,))
            try:
                self.create_table()
                PostgresReadModelView(self.datastore).migrate_views()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.migrate_lock_key,))

    def missing_tables(self) -> list[str]:
        """Tables of this store that do not exist yet."""
        wanted = [self.events_table_name, RECORDS_TABLE, TRACKING_TABLE, *VIEW_TABLES]
        with self.datastore.transaction(commit=False) as curs:
            missing = []
            for name in wanted:
                curs.execute("SELECT to_regclass(%s) AS t", (f'"{self.datastore.schema}"."{name}"',))
                row = curs.fetchone()
                if row is None or row["t"] is None:
                    missing.append(name)
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


class PostgresStoreFactory(PostgresFactory):
    """`postgresql://...`: the production store, shared by many processes."""

    application_recorder_class = PostgresRecorder

    def application_recorder(self) -> ApplicationRecorder:
        prefix = self.env.name.lower() or "stored"
        return PostgresRecorder(datastore=self.datastore, events_table_name=prefix + "_events")
