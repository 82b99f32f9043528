"""Each named consumer's durable checkpoint, failure and skips, in the store's own database.

Two tables beside the events (in the store's schema on PostgreSQL):

- `itertrack_consumers`: one row per consumer name: `position` (the notification id of the last event the
  consumer is done with, 0 before the first), and while it is failed, `failed_position` (the event its handler
  raised on), `last_error` and `failed_at`; `updated_at` is when the row last changed.
- `itertrack_consumer_skips`: one row per event an operator skipped: consumer name, position, the event's key
  and type, the error it failed with, the operator's reason, who skipped it (the OS user) and when.

`ConsumerCheckpoint` is the library's `TrackingRecorder` for one consumer, so the library's projection runner
subscribes to the log from its position. Every move of the position is a compare-and-set from the position the
mover read, in a transaction that may carry the consumer's own writes (`commit`), so an event's effect and the
checkpoint past it commit together or not at all.
"""

from __future__ import annotations

import getpass
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from itertrack.domain.model.errors import InvalidInputError, StoreConfigError
from itertrack.projections.projection import PositionConflictError

CONSUMERS_TABLE = "itertrack_consumers"
SKIPS_TABLE = "itertrack_consumer_skips"

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


@dataclass(frozen=True)
class Failure:
    """Why a consumer stopped: the event its handler raised on, and the error (one line)."""

    position: int
    error: str


@dataclass(frozen=True)
class CheckpointRow:
    """One consumer's row of `itertrack_consumers`."""

    name: str
    position: int
    failed_position: int | None
    last_error: str | None
    failed_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class SkipRow:
    """One skipped event: which, why, by whom and when."""

    name: str
    position: int
    event_key: str | None
    event_type: str | None
    error: str | None
    reason: str
    skipped_by: str
    skipped_at: datetime


class _Statements:
    """The SQL of the two tables in one dialect (fixed table names; the schema was validated as an identifier)."""

    def __init__(self, dialect: str, schema: str | None) -> None:
        prefix = f'"{schema}".' if schema else ""
        self.consumers = f"{prefix}{CONSUMERS_TABLE}"
        self.skips = f"{prefix}{SKIPS_TABLE}"
        p = "?" if dialect == SQLITE else "%s"
        big, when = ("INTEGER", "TEXT") if dialect == SQLITE else ("BIGINT", "TIMESTAMPTZ")
        self.create = (
            f"CREATE TABLE IF NOT EXISTS {self.consumers} (name TEXT PRIMARY KEY, position {big} NOT NULL DEFAULT 0, "
            f"failed_position {big}, last_error TEXT, failed_at {when}, updated_at {when})",
            f"CREATE TABLE IF NOT EXISTS {self.skips} (name TEXT NOT NULL, position {big} NOT NULL, event_key TEXT, "
            f"event_type TEXT, error TEXT, reason TEXT NOT NULL, skipped_by TEXT NOT NULL, skipped_at {when} NOT NULL, "
            "PRIMARY KEY (name, position))",
        )
        self.ensure_row = (
            f"INSERT INTO {self.consumers} (name, position, updated_at) VALUES ({p}, 0, {p}) "
            "ON CONFLICT (name) DO NOTHING"
        )
        self.select = (
            "SELECT name, position, failed_position, last_error, failed_at, updated_at "
            f"FROM {self.consumers} WHERE name = {p}"
        )
        self.select_all = (
            f"SELECT name, position, failed_position, last_error, failed_at, updated_at FROM {self.consumers} "
            "ORDER BY name"
        )
        self.select_skips = (
            "SELECT name, position, event_key, event_type, error, reason, skipped_by, skipped_at "
            f"FROM {self.skips} ORDER BY name, position"
        )
        # Moves the position by compare-and-set; a failed consumer's position does not move.
        self.advance = (
            f"UPDATE {self.consumers} SET position = {p}, updated_at = {p} "
            f"WHERE name = {p} AND position = {p} AND failed_position IS NULL RETURNING position"
        )
        self.fail = (
            f"UPDATE {self.consumers} SET position = {p}, failed_position = {p}, last_error = {p}, failed_at = {p}, "
            f"updated_at = {p} WHERE name = {p} AND position = {p} AND failed_position IS NULL RETURNING position"
        )
        self.clear = (
            f"UPDATE {self.consumers} SET failed_position = NULL, last_error = NULL, failed_at = NULL, "
            f"updated_at = {p} WHERE name = {p} AND failed_position IS NOT NULL RETURNING name"
        )
        self.skip = (
            f"UPDATE {self.consumers} SET position = {p}, failed_position = NULL, last_error = NULL, failed_at = NULL, "
            f"updated_at = {p} WHERE name = {p} AND failed_position = {p} RETURNING position"
        )
        self.insert_skip = (
            f"INSERT INTO {self.skips} (name, position, event_key, event_type, error, reason, skipped_by, skipped_at) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
        )
        self.reset = (
            f"UPDATE {self.consumers} SET position = 0, failed_position = NULL, last_error = NULL, failed_at = NULL, "
            f"updated_at = {p} WHERE name = {p}"
        )


class ConsumerTables:
    """The consumers' tables of one store (SQLite file or PostgreSQL schema), on the store's own datastore."""

    def __init__(self, datastore: SQLiteDatastore | PostgresDatastore) -> None:
        self.datastore = datastore
        self.dialect = POSTGRESQL if isinstance(datastore, PostgresDatastore) else SQLITE
        schema = datastore.schema if isinstance(datastore, PostgresDatastore) else None
        self.schema = schema
        self.sql = _Statements(self.dialect, schema)
        self._migrated = False
        self._migrating = threading.Lock()

    @classmethod
    def of(cls, factory: object) -> ConsumerTables:
        """The consumers' tables of a store factory's database; `StoreConfigError` for a store without one
        (memory)."""
        datastore = getattr(factory, "datastore", None)
        if not isinstance(datastore, SQLiteDatastore | PostgresDatastore):
            raise StoreConfigError("store", type(factory).__name__, "has no database for consumer checkpoints")
        return cls(datastore)

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Any]:
        """A transaction on the store's datastore (the library's cursor: SQLite or psycopg)."""
        with self.datastore.transaction(commit=commit) as c:
            yield c

    def for_consumer(self, c: Any) -> None:
        """Prepare a transaction a consumer writes in: on PostgreSQL, unqualified table names resolve to the store's
        schema first (`SET LOCAL search_path`: for this transaction only), so a consumer's tables live beside the
        events."""
        if self.dialect == POSTGRESQL:
            c.execute(f'SET LOCAL search_path TO "{self.schema}", public')

    def migrate(self) -> None:
        """Create the two tables (idempotent; on PostgreSQL under a transaction lock, so two first runs do not
        race on the catalog)."""
        with self._migrating:
            if self._migrated:
                return
            with self.transaction(commit=True) as c:
                if self.dialect == POSTGRESQL:
                    c.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"itertrack-consumers:{self.schema}",))
                for statement in self.sql.create:
                    c.execute(statement)
            self._migrated = True

    def exist(self) -> bool:
        """Whether the consumers' table exists (no consumer ever ran on this store if not)."""
        with self.transaction(commit=False) as c:
            if self.dialect == POSTGRESQL:
                c.execute("SELECT to_regclass(%s) AS t", (self.sql.consumers,))
                row = c.fetchone()
                return row is not None and row["t"] is not None
            c.execute("SELECT 1 AS t FROM sqlite_master WHERE type = 'table' AND name = ?", (CONSUMERS_TABLE,))
            return c.fetchone() is not None

    def db_time(self, moment: datetime) -> Any:
        """A time as the store keeps it (UTC ISO-8601 text on SQLite)."""
        return moment.astimezone(UTC).isoformat(timespec="microseconds") if self.dialect == SQLITE else moment

    @staticmethod
    def _time(value: Any) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(str(value))

    def _row(self, row: Any) -> CheckpointRow:
        return CheckpointRow(
            name=row["name"],
            position=int(row["position"]),
            failed_position=None if row["failed_position"] is None else int(row["failed_position"]),
            last_error=row["last_error"],
            failed_at=self._time(row["failed_at"]),
            updated_at=self._time(row["updated_at"]),
        )

    def rows(self) -> list[CheckpointRow]:
        """Every consumer's row, by name (none before the first consumer ran)."""
        if not self.exist():
            return []
        with self.transaction(commit=False) as c:
            c.execute(self.sql.select_all)
            return [self._row(row) for row in c.fetchall()]

    def skips(self) -> list[SkipRow]:
        """Every recorded skip, by consumer name and position."""
        if not self.exist():
            return []
        with self.transaction(commit=False) as c:
            c.execute(self.sql.select_skips)
            return [
                SkipRow(
                    name=r["name"],
                    position=int(r["position"]),
                    event_key=r["event_key"],
                    event_type=r["event_type"],
                    error=r["error"],
                    reason=r["reason"],
                    skipped_by=r["skipped_by"],
                    skipped_at=self._time(r["skipped_at"]) or datetime.now(UTC),
                )
                for r in c.fetchall()
            ]

    def row(self, name: str) -> CheckpointRow | None:
        """One consumer's row (None if it never ran, or no consumer ever ran)."""
        if not self.exist():
            return None
        with self.transaction(commit=False) as c:
            c.execute(self.sql.select, (name,))
            row = c.fetchone()
            return None if row is None else self._row(row)

    def _known(self, name: str) -> CheckpointRow:
        row = self.row(name)
        if row is None:
            raise InvalidInputError(
                "name", name, "is not a consumer that ran on this store (see `itertrack consumers`)"
            )
        return row

    def retry(self, name: str) -> int:
        """Clear the consumer's failure so its next run handles the failed event again; returns that position.

        Raises `InvalidInputError` naming the consumer when it is unknown or not failed."""
        current = self._known(name)
        with self.transaction(commit=True) as c:
            c.execute(self.sql.clear, (self.db_time(datetime.now(UTC)), name))
            row = c.fetchone()
        if row is None or current.failed_position is None:
            raise InvalidInputError("name", name, "is not failed: nothing to retry")
        return current.failed_position

    def skip(self, name: str, position: int, reason: str, *, about: Callable[[int], tuple[str, str] | None]) -> SkipRow:
        """Skip the one event the consumer failed on (it must be at `position`), recording who, when and why, and
        move the consumer's position past it: one transaction.

        `about(position)` gives the event's key and type (None if the log has no such event). Raises
        `InvalidInputError` naming the field when the consumer is unknown or not failed, the position is not the
        failed one, or the reason is empty.
        """
        if not reason.strip():
            raise InvalidInputError("reason", reason, "must say why the event is skipped")
        current = self._known(name)
        if current.failed_position is None:
            raise InvalidInputError("name", name, "is not failed: only the event a consumer failed on can be skipped")
        if current.failed_position != position:
            raise InvalidInputError(
                "position", position, f"is not the event {name!r} failed on (position {current.failed_position})"
            )
        key, event_type = about(position) or (None, None)
        now = datetime.now(UTC)
        skipped_by = _operator()
        with self.transaction(commit=True) as c:
            c.execute(self.sql.skip, (position, self.db_time(now), name, position))
            if c.fetchone() is None:
                raise InvalidInputError("position", position, f"is no longer the event {name!r} failed on")
            c.execute(
                self.sql.insert_skip,
                (name, position, key, event_type, current.last_error, reason, skipped_by, self.db_time(now)),
            )
        return SkipRow(name, position, key, event_type, current.last_error, reason, skipped_by, now)


def _operator() -> str:
    """Who is skipping: the OS user running the command."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the password database
        return "unknown"


class ConsumerCheckpoint(TrackingRecorder):
    """One consumer's position, as the library's tracking recorder: the runner subscribes from `max_tracking_id`.

    The application name the library passes is the log's; the checkpoint is the consumer's whatever it is.
    """

    def __init__(self, tables: ConsumerTables, name: str) -> None:
        self.tables = tables
        self.name = name

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.tables.dialect

    def migrate(self) -> None:
        """Create the tables and this consumer's row (at position 0) if they do not exist."""
        self.tables.migrate()
        with self.tables.transaction(commit=True) as c:
            c.execute(self.tables.sql.ensure_row, (self.name, self.tables.db_time(datetime.now(UTC))))

    def state(self) -> CheckpointRow:
        """This consumer's row."""
        row = self.tables.row(self.name)
        assert row is not None  # `migrate` made it
        return row

    def position(self) -> int:
        """The notification id of the last event this consumer is done with (0 before the first)."""
        return self.state().position

    def max_tracking_id(self, application_name: str) -> int | None:
        """The library's question: where to subscribe from (after this position)."""
        return self.position() or None

    def insert_tracking(self, tracking: Tracking) -> None:
        """The library's one-event path: move the position to the event's (from where it is now)."""
        self.commit(self.position(), tracking.notification_id)

    def commit(
        self,
        expected: int,
        new: int,
        work: Callable[[Any], None] | None = None,
        *,
        failure: Failure | None = None,
        pipelined: bool = False,
    ) -> None:
        """Move the position from `expected` to `new` and run `work(cursor)` in the same transaction (the position
        first, so concurrent movers queue on the row); with `failure`, mark the consumer failed at that event too.

        With `pipelined`, on PostgreSQL, `work`'s statements are sent in psycopg's pipeline mode (no round trip per
        statement): a server error then surfaces when the pipeline syncs, after `work` returned.

        Raises `PositionConflictError` (nothing written) if the position is no longer `expected` or the consumer
        is failed; whatever `work` raises rolls everything back and is raised.
        """
        sql = self.tables.sql
        now = self.tables.db_time(datetime.now(UTC))
        with self.tables.transaction(commit=True) as c:
            if failure is None:
                c.execute(sql.advance, (new, now, self.name, expected))
            else:
                c.execute(sql.fail, (new, failure.position, failure.error, now, now, self.name, expected))
            if c.fetchone() is None:
                raise PositionConflictError(
                    f"consumer {self.name!r} is no longer at position {expected} (moved, reset or failed meanwhile)"
                )
            if work is not None:
                self.tables.for_consumer(c)
                if pipelined and self.dialect == POSTGRESQL:
                    with c.connection.pipeline():
                        work(c)
                else:
                    work(c)

    def reset(self, work: Callable[[Any], None] | None = None) -> None:
        """Move the position back to 0 and clear any failure (skips stay recorded), with `work(cursor)` in the
        same transaction."""
        with self.tables.transaction(commit=True) as c:
            c.execute(self.tables.sql.reset, (self.tables.db_time(datetime.now(UTC)), self.name))
            if work is not None:
                self.tables.for_consumer(c)
                work(c)
