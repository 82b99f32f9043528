"""The read models in the PostgreSQL store's schema, beside the events."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder

from itertrack.adapters.store.postgres_failures import driver_error
from itertrack.adapters.views.sql import (
    APPLICATION_NAME,
    CURRENT_COLUMNS,
    LLM_CALL_COLUMNS,
    POSTGRES_TYPES,
    ViewStatements,
)
from itertrack.adapters.views.tables import ViewTables
from itertrack.projections.fold import BatchChanges

# The element type of each column's array in the bulk writes (`unnest`): the columns' own types.
_CURRENT_ARRAYS = ("uuid", "text", "int4", "text", "text", "text", *("timestamptz",) * 4, "int4", "text")
_CALL_ARRAYS = (
    ("uuid", "int4", "text", "text", "text", "text", "timestamptz", "int4")
    + ("int8",) * 6
    + ("text", "text", "int4", "text", "float8", "text")
)
# A total travels as two arrays, the float ones and the int ones (each None where the other holds the value), so
# that each reaches the numeric column as a single-row insert sends it: a float as float8 (cast to numeric by
# PostgreSQL, as on assignment), an int exactly (as text: psycopg could not type one array of both).
_TOTAL = "COALESCE({f}::numeric, {n}::numeric)"


def _unnest(types: tuple[str, ...]) -> str:
    return f"unnest({', '.join(f'%s::{t}[]' for t in types)})"


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
        self._bulk = self._bulk_statements()

    def _bulk_statements(self) -> dict[str, str]:
        """The batch's writes as one statement per table, each row's values in arrays (`unnest`): one round
        trip per table instead of one per row; the same conflict rules as the single-row statements."""
        cur, met, agt, dur, calls = self.statements.tables
        cols = ", ".join(CURRENT_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in CURRENT_COLUMNS[1:])
        call_cols = ", ".join(LLM_CALL_COLUMNS)
        return {
            "current": f"INSERT INTO {cur} ({cols}) SELECT * FROM {_unnest(_CURRENT_ARRAYS)} "
            f"ON CONFLICT (id) DO UPDATE SET {updates}",
            "metric": f"INSERT INTO {met} (iteration_id, metric, total) "
            f"SELECT i, m, {_TOTAL.format(f='f', n='n')} FROM {_unnest(('uuid', 'text', 'float8', 'text'))} "
            "AS t(i, m, f, n) ON CONFLICT (iteration_id, metric) DO UPDATE SET total = excluded.total",
            "agent": f"INSERT INTO {agt} (agent_id, metric, total, iterations) "
            f"SELECT a, m, {_TOTAL.format(f='f', n='n')}, k FROM {_unnest(('text', 'text', 'float8', 'text', 'int8'))} "
            f"AS t(a, m, f, n, k) ON CONFLICT (agent_id, metric) DO UPDATE SET total = {agt}.total + excluded.total, "
            f"iterations = {agt}.iterations + excluded.iterations",
            "duration": f"INSERT INTO {dur} (iteration_id, phase, duration_ms, visits) "
            f"SELECT * FROM {_unnest(('uuid', 'text', 'float8', 'int8'))} ON CONFLICT (iteration_id, phase) "
            "DO UPDATE SET duration_ms = excluded.duration_ms, visits = excluded.visits",
            "calls": f"INSERT INTO {calls} ({call_cols}) SELECT * FROM {_unnest(_CALL_ARRAYS)}",
        }

    def _write(self, c: Any, changes: BatchChanges) -> None:
        """Write a batch's changed rows with one statement per table (arrays of values, `unnest`): per row,
        the single-row upserts cost the driver far more than the server. Keys are unique within each
        statement (the fold's dicts), as `ON CONFLICT DO UPDATE` requires."""
        bulk = self._bulk
        writes: list[tuple[str, list[tuple[Any, ...]]]] = [
            ("current", [self._current_params(row) for row in changes.current.values()]),
            ("metric", [(i, m, *_split(t)) for (i, m), t in changes.metrics.items()]),
            ("agent", [(a, m, *_split(t), n) for (a, m), (t, n) in changes.agent_deltas.items()]),
            ("duration", [(i, p, d, v) for (i, p), (d, v) in changes.durations.items()]),
            ("calls", [self._llm_call_params(row) for row in changes.llm_calls.values()]),
        ]
        for name, rows in writes:
            if rows:
                c.execute(bulk[name], [list(column) for column in zip(*rows, strict=True)])

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


def _split(total: int | float) -> tuple[float | None, str | None]:
    """A total as (float, None) or (None, the int's digits): see `_TOTAL`."""
    if isinstance(total, float):
        return total, None
    return None, str(total)
