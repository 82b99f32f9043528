"""Shared pieces of the benchmark: timing, floors (raw driver inserts), stores and result rows."""

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


class SQLiteFloor:
    """Plain sqlite3: the same row inserted and committed, WAL journal, default (FULL) synchronous."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS stored_events (originator_id TEXT, originator_version INTEGER, "
            "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
        )
        self.oid = uuid.uuid4().hex
        self.version = 0

    def insert(self) -> None:
        self.version += 1
        self.conn.execute("BEGIN")
        self.conn.execute("INSERT INTO stored_events VALUES (?,?,?,?)", (self.oid, self.version, TOPIC, STATE))
        self.conn.execute("COMMIT")


class PostgresFloor:
    """Plain psycopg: the same row inserted and committed."""

    def __init__(self, url: str, schema: str) -> None:
        self.conn = psycopg.connect(url)
        self.table = sql.Identifier(schema, "floor_events")
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (originator_id uuid, originator_version bigint, topic text, "
                "state bytea, PRIMARY KEY (originator_id, originator_version))"
            ).format(self.table)
        )
        self.conn.commit()
        self.insert_sql = sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(self.table)
        self.oid = uuid.uuid4()
        self.version = 0

    def insert(self) -> None:
        self.version += 1
        self.conn.execute(self.insert_sql, (self.oid, self.version, TOPIC, STATE))
        self.conn.commit()


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
