"""Benchmark rows for group commit: N threads of the sync tracker, each changing its own iteration, durable.

Against the floor beneath it in the same run: one commit per change with the plain driver, the cheapest durable
insert of the same row (see `bench_support`), from as many threads (PostgreSQL: each thread on an autocommit
connection of its own, one prepared INSERT round trip per change; SQLite: one shared autocommit connection
taking turns, one INSERT statement in SQLite's implicit transaction per change, with the store's WAL journal
and synchronous setting). Each side runs `runs` times, interleaved, and the row gives the median with the
spread (min-max) across runs.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from itertrack.adapters.bootstrap import store_of
from itertrack.domain import PerformanceTracker
from scripts.bench_support import (
    SQLITE_INSERT,
    STATE,
    TOPIC,
    Row,
    create_postgres_floor_table,
    postgres_floor_insert_sql,
    sqlite_floor_connection,
)

TRACKER_LOCK_STRIPES = 64  # the tracker's per-iteration locks are striped by id (tracker._LOCK_STRIPES)


def _threads_rate(threads: int, changes: int, work: Callable[[int], Callable[[], None]]) -> float:
    """Changes per second of `threads` threads each calling its own `work(n)()` `changes` times, from a common start."""
    calls = [work(n) for n in range(threads)]
    gate = threading.Barrier(threads + 1, timeout=120)
    errors: list[BaseException] = []

    def run(call: Callable[[], None]) -> None:
        gate.wait()
        try:
            for _ in range(changes):
                call()
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    pool = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in pool:
        t.start()
    gate.wait()
    started = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return threads * changes / elapsed


def _distinct_ids(count: int) -> list[uuid.UUID]:
    """Iteration ids on distinct tracker lock stripes: the threads wait only on the store, never on each other."""
    taken: dict[int, uuid.UUID] = {}
    while len(taken) < count:
        candidate = uuid.uuid4()
        taken.setdefault(candidate.int % TRACKER_LOCK_STRIPES, candidate)
    return list(taken.values())


def _tracker_rate(store: str, threads: int, changes: int, group: int) -> tuple[float, float]:
    """Changes/s of the sync tracker from `threads` threads (distinct iterations), and the mean changes per
    store transaction; `group` bounds a group (1: every change commits alone)."""
    env = {"ITERTRACK_GROUP_COMMIT_CHANGES": str(group)}
    with PerformanceTracker(store=store, migrate=False, env=env) as tracker:
        ids = [tracker.start_iteration("bench", n, iteration_id=iid) for n, iid in enumerate(_distinct_ids(threads))]
        committer = store_of(tracker).group
        before = (committer.commits, committer.changes)

        def work(n: int) -> Callable[[], None]:
            return lambda: tracker.update_metrics(ids[n], {"backtest_execution_time_ms": 1520})

        rate = _threads_rate(threads, changes, work)
        commits, grouped = committer.commits - before[0], committer.changes - before[1]
    return rate, grouped / max(1, commits)


def _pg_floor_rate(url: str, schema: str, threads: int, changes: int) -> float:
    """Changes/s of `threads` threads, each on its own autocommit connection, one prepared INSERT round trip
    per change (the row of one change, into a table shaped like the store's events table)."""
    with psycopg.connect(url, autocommit=True) as conn:
        insert = postgres_floor_insert_sql(create_postgres_floor_table(conn, schema, "floor_group_events"))
    conns = [psycopg.connect(url, autocommit=True) for _ in range(threads)]

    def work(n: int) -> Callable[[], None]:
        oid, version = uuid.uuid4(), [0]

        def one() -> None:
            version[0] += 1
            conns[n].execute(insert, (oid, version[0], TOPIC, STATE), prepare=True)

        return one

    try:
        return _threads_rate(threads, changes, work)
    finally:
        for c in conns:
            c.close()


def _sqlite_floor_rate(path: Path, threads: int, changes: int) -> float:
    """Changes/s of `threads` threads sharing one autocommit connection (WAL, synchronous as the store's writer
    connection: SQLite's default, FULL), taking turns under a lock as the store's writer does, one INSERT
    statement per change in SQLite's implicit transaction (no BEGIN or COMMIT statements).

    (A connection per thread is slower still: SQLite has one writer, and the others' busy handler sleeps.)"""
    conn = sqlite_floor_connection(path, check_same_thread=False)
    insert = SQLITE_INSERT.format(table="stored_events")
    turn = threading.Lock()

    def work(n: int) -> Callable[[], None]:
        oid, version = uuid.uuid4().hex, [0]

        def one() -> None:
            version[0] += 1
            with turn:
                conn.execute(insert, (oid, version[0], TOPIC, STATE))

        return one

    try:
        return _threads_rate(threads, changes, work)
    finally:
        conn.close()


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} changes/s (runs {min(values):,.0f}-{max(values):,.0f})"


def threads_group_commit(
    store: str, floor: Callable[[], float], label: str, *, threads: int, changes: int, runs: int
) -> Row:
    """Row: `threads` threads of one sync tracker on distinct iterations, with group commit, against the floor
    (one commit per change, plain driver, as many threads and connections); the tracker without grouping in
    the note."""
    PerformanceTracker(store=store, migrate=True).close()
    ours, theirs, alone, sizes = [], [], [], []
    for _ in range(runs):
        theirs.append(floor())
        rate, size = _tracker_rate(store, threads, changes, group=256)
        ours.append(rate)
        sizes.append(size)
        alone.append(_tracker_rate(store, threads, changes, group=1)[0])
    ratio = statistics.median(ours) / statistics.median(theirs)
    return Row(
        path=f"{threads} threads of the sync tracker, distinct iterations, group commit, {label}",
        measured=_spread(ours),
        floor=f"{_spread(theirs)}, one autocommit insert per change",
        ratio=round(ratio, 2),
        target=">= 1.0x",
        met=ratio >= 1.0,
        note=(
            f"{runs} runs x {threads * changes} changes; {statistics.median(sizes):.1f} changes per transaction "
            f"(median); without grouping (ITERTRACK_GROUP_COMMIT_CHANGES=1): {_spread(alone)}"
        ),
    )


def group_rows(folder: Path, pg_url: str, pg_schema: str, quick: bool) -> list[Row]:
    """The group-commit rows, on SQLite and PostgreSQL."""
    threads = 16
    changes, runs = (10, 1) if quick else (100, 5)
    return [
        threads_group_commit(
            f"sqlite:///{folder / 'group.db'}",
            lambda: _sqlite_floor_rate(folder / "group-floor.db", threads, changes),
            "SQLite file",
            threads=threads,
            changes=changes,
            runs=runs,
        ),
        threads_group_commit(
            f"{pg_url}?schema={pg_schema}&pool_size=2&max_overflow=14",
            lambda: _pg_floor_rate(pg_url, pg_schema, threads, changes),
            "PostgreSQL",
            threads=threads,
            changes=changes,
            runs=runs,
        ),
    ]
