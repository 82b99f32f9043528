"""Shared pieces of the benchmark: timing, floors (the cheapest durable insert with the plain driver), stores
and result rows."""

from __future__ import annotations

import os
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from itertrack.adapters.bootstrap import store_of

TOPIC = "itertrack.domain.model.iteration:Iteration.MetricsRecorded"
STATE = b'{"timestamp":"2026-11-25T00:00:00.000000Z","metrics":{"backtest_execution_time_ms":1520}}'


@dataclass
class Row:
    """One line of the results table."""

    path: str
    measured: str
    floor: str
    ratio: float | None
    target: str
    met: bool | None
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of `repeat` calls, in milliseconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def side_by_side(
    measured: Callable[[], object], floor: Callable[[], object], rounds: int, repeat: int
) -> tuple[float, float]:
    """Medians over interleaved rounds, so that machine noise hits both alike."""
    ours, theirs = [], []
    for _ in range(rounds):
        theirs.append(median_ms(floor, repeat))
        ours.append(median_ms(measured, repeat))
    return statistics.median(ours), statistics.median(theirs)


# The floors' tables have the shape of the store's events table (eventsourcing 9.5.6's application recorder):
# the same columns and keys, and the notification id that orders the log (SQLite: the rowid; PostgreSQL: a
# bigserial with its unique index). A floor insert is the same row, as the tracker writes it for one change.
SQLITE_EVENTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS {table} (originator_id TEXT, originator_version INTEGER, "
    "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
)
SQLITE_INSERT = "INSERT INTO {table} VALUES (?,?,?,?)"


def sqlite_durability(conn: sqlite3.Connection) -> tuple[str, int]:
    """(journal mode, synchronous level) of a SQLite connection: ("wal", 2) is WAL with FULL."""
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
    return str(journal).lower(), int(synchronous)


def sqlite_floor_connection(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A plain sqlite3 connection opened as the SQLite store opens its writer (`isolation_level=None`:
    autocommit, the driver issues no BEGIN of its own; default synchronous, which is FULL in WAL mode on
    this build), the file in WAL mode as the store puts it, with a table shaped like the events table."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=check_same_thread)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(SQLITE_EVENTS_TABLE.format(table="stored_events"))
    return conn


class SQLiteFloor:
    """The cheapest durable insert with plain sqlite3: one `INSERT` in autocommit mode, i.e. one statement in
    SQLite's implicit transaction (no separate BEGIN or COMMIT statement), committed with the store's
    durability: WAL journal, synchronous FULL (the store sets neither, so both take SQLite's defaults for a
    WAL file; `write_rows` checks that the two match). `insert` writes the same row as one tracked change
    (the events table's shape and columns, the same topic and state bytes) under a fresh version."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite_floor_connection(path)
        self.insert_sql = SQLITE_INSERT.format(table="stored_events")
        self.oid = uuid.uuid4().hex
        self.version = 0

    def durability(self) -> tuple[str, int]:
        """(journal mode, synchronous level) of the floor's connection."""
        return sqlite_durability(self.conn)

    def insert(self) -> None:
        """One row, committed durably before it returns (one statement, no explicit transaction)."""
        self.version += 1
        self.conn.execute(self.insert_sql, (self.oid, self.version, TOPIC, STATE))


def create_postgres_floor_table(conn: psycopg.Connection[Any], schema: str, name: str) -> sql.Identifier:
    """Create (if missing) a table shaped like the store's events table in `schema`; returns its name."""
    table = sql.Identifier(schema, name)
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (originator_id uuid NOT NULL, originator_version bigint NOT NULL, "
            "topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
        ).format(table)
    )
    conn.execute(
        sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (notification_id)").format(
            sql.Identifier(f"{name}_notification_id_idx"), table
        )
    )
    return table


def postgres_floor_insert_sql(table: sql.Composable) -> sql.Composed:
    """The floor's INSERT of one event row (its notification id from the bigserial, as the store's)."""
    return sql.SQL("INSERT INTO {} (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)").format(
        table
    )


class PostgresFloor:
    """The cheapest durable insert with plain psycopg: one `INSERT` on an autocommit connection, so the
    server commits it (synchronous_commit as the server sets it, `on` here) in the same one round trip;
    the statement prepared on the server after its first use (`prepare=True`: bind and execute only).
    Binary parameters made no measurable difference on this machine (text kept). `insert` writes the same
    row as one tracked change into a table shaped like the store's events table (uuid, version, topic,
    state, bigserial notification id with its unique index) under a fresh version."""

    def __init__(self, url: str, schema: str, table: str = "floor_events") -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.insert_sql = postgres_floor_insert_sql(create_postgres_floor_table(self.conn, schema, table))
        self.oid = uuid.uuid4()
        self.version = 0

    def insert(self) -> None:
        """One row, committed durably before it returns: one client-server round trip."""
        self.version += 1
        self.conn.execute(self.insert_sql, (self.oid, self.version, TOPIC, STATE), prepare=True)

    def close(self) -> None:
        self.conn.close()


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A fresh schema, dropped afterwards."""
    schema = f"itertrack_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def file_size(path: Path) -> int:
    """Bytes of a SQLite database with its WAL and shared-memory files."""
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if os.path.exists(p))


def percentile(values: list[float], q: float) -> float:
    """Inclusive quantile `q` (0-100)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def seed_events(tracker: Any, events: int, per_save: int = 200) -> int:
    """Write iterations of six events (start, three phases, metrics, failed), `per_save` iterations per save."""
    from itertrack.domain import Iteration  # noqa: PLC0415  # scripts import the package lazily

    clock = tracker.clock
    iterations = events // 6
    for start in range(0, iterations, per_save):
        batch = []
        for n in range(start, min(start + per_save, iterations)):
            it = Iteration.start(clock.new_id(), f"agent-{n % 20}", n, clock.now())
            it.change_phase("scan_generation", None, clock.now())
            it.record_metrics({"scan_generation_tokens": 1500, "scan_generation_time_ms": 812.5}, clock.now())
            it.change_phase("backtest_execution", None, clock.now())
            it.change_phase("analysis", None, clock.now())
            # Failed, not completed: verify then needs no agent_iterations record for it.
            it.change_phase("failed", "benchmark iteration", clock.now())
            batch.append(it)
        store_of(tracker).app.save(*batch)
    return iterations * 6
