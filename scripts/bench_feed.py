"""Benchmark rows of the feed (issue 15): a named consumer writing one row per event in catch-up, beside plain
SQL doing the same, and append-to-handler latency of a following consumer."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import psycopg
from psycopg import sql

from itertrack.adapters.feed.consumer import Delivery, TransactionalConsumer
from itertrack.adapters.feed.runner import run_consumer
from itertrack.adapters.store.url import parse_store_url
from itertrack.domain import PerformanceTracker
from scripts.bench_support import Row, percentile, pg_schema, seed_events

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
BATCH = 500


class OneRowPerEvent(TransactionalConsumer):
    """Writes (key, position, agent) per event in the checkpoint's transaction: exactly-once."""

    name: ClassVar[str] = "bench-rows"

    def migrate(self, cursor: Any, sql_dialect: str) -> None:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_feed_rows (event_key TEXT PRIMARY KEY, position BIGINT, agent_id TEXT)"
        )

    def handle_in(self, delivery: Delivery, cursor: Any, sql_dialect: str) -> None:
        p = "?" if sql_dialect == "sqlite" else "%s"
        cursor.execute(
            f"INSERT INTO bench_feed_rows (event_key, position, agent_id) VALUES ({p}, {p}, {p})",  # noqa: S608  # placeholders only
            (delivery.key, delivery.position, delivery.agent_id),
        )


def _floor_sqlite(path: str) -> int:
    """Plain sqlite3: read the events in pages, insert one row per event, one transaction per page."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE floor_feed_rows (event_key TEXT PRIMARY KEY, position BIGINT, agent_id TEXT)")
    last, done = 0, 0
    select = "SELECT rowid, originator_id, originator_version FROM stored_events WHERE rowid > ? ORDER BY rowid LIMIT ?"
    while rows := conn.execute(select, (last, BATCH)).fetchall():
        last = rows[-1][0]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO floor_feed_rows VALUES (?, ?, ?)", [(f"{r[1]}:{r[2]}", r[0], "agent") for r in rows]
        )
        conn.execute("COMMIT")
        done += len(rows)
    conn.close()
    return done


def _floor_postgres(url: str, schema: str) -> int:
    """Plain psycopg: the same, on the events table of the schema."""
    with psycopg.connect(url) as conn:
        events = sql.Identifier(schema, "performancetracker_events")
        copy = sql.Identifier(schema, "floor_feed_rows")
        create = sql.SQL("CREATE TABLE {} (event_key TEXT PRIMARY KEY, position BIGINT, agent_id TEXT)")
        conn.execute(create.format(copy))
        conn.commit()
        select = sql.SQL(
            "SELECT notification_id, originator_id, originator_version FROM {} WHERE notification_id > %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(events)
        insert = sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(copy)
        last, done = 0, 0
        while rows := conn.execute(select, (last, BATCH)).fetchall():
            last = rows[-1][0]
            with conn.cursor() as cur:
                cur.executemany(insert, [(f"{r[1]}:{r[2]}", r[0], "agent") for r in rows])
            conn.commit()
            done += len(rows)
    return done


def consumer_catch_up(store: str, label: str, events: int, target: float) -> Row:
    """Row: a TransactionalConsumer writing one row per event, from zero to the log's end."""
    with PerformanceTracker(store=store, migrate=True) as tracker:
        written = seed_events(tracker, events)
        started = time.perf_counter()
        handled = run_consumer(tracker, OneRowPerEvent(), batch_size=BATCH)
        ours = handled / (time.perf_counter() - started)
    url = parse_store_url(store)
    started = time.perf_counter()
    if url.scheme == "sqlite":
        floor_done = _floor_sqlite(url.path)
    else:
        floor_done = _floor_postgres(store.split("?", maxsplit=1)[0], url.schema_name)
    theirs = floor_done / (time.perf_counter() - started)
    assert handled == written == floor_done, (handled, written, floor_done)
    return Row(
        path=f"feed: consumer writing one row per event (exactly-once), catch-up of {written:,} events, {label}",
        measured=f"{ours:,.0f} events/s",
        floor=f"{theirs:,.0f} events/s (read the events table, insert one row per event, {BATCH} per transaction)",
        ratio=round(ours / theirs, 2),
        target=f">= {target:,.0f}/s",
        met=ours >= target,
    )


def append_to_handler(store: str, label: str, appends: int, target_ms: float) -> Row:
    """Row: time from a committed change to the `log` consumer's line for it (`itertrack consume log --follow`)."""
    with PerformanceTracker(store=store, migrate=True) as tracker:
        iid = tracker.start_iteration("bench", 1)
        child = subprocess.Popen(
            [ITERTRACK, "consume", "log", "--follow", "--store", store],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert child.stdout is not None
            while json.loads(child.stdout.readline())["version"] != 1:  # caught up with the Started
                pass
            latencies = []
            for n in range(appends):
                tracker.update_phase(iid, ["scan_generation", "scan_execution", "backtest_execution"][n % 3])
                committed = time.perf_counter()
                line = json.loads(child.stdout.readline())
                latencies.append((time.perf_counter() - committed) * 1000)
                assert line["version"] == n + 2, line
                time.sleep(0.005)  # spaced appends: each latency is one change's, not a queue's
        finally:
            child.terminate()
            child.wait(timeout=30)
    p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
    return Row(
        path=f"feed: append to handler (consume log --follow), {label}",
        measured=f"p50 {p50:.1f} / p95 {p95:.1f} / p99 {p99:.1f} / max {max(latencies):.1f} ms",
        floor="none",
        ratio=None,
        target=f"p99 <= {target_ms:.0f} ms",
        met=p99 <= target_ms,
    )


def feed_rows(folder: Path, pg_url: str, quick: bool) -> list[Row]:
    """Every row of the feed."""
    events = 6_000 if quick else 120_000
    rows = [consumer_catch_up(f"sqlite:///{folder / 'feed.db'}", "SQLite file", events, 20_000)]
    with pg_schema(pg_url) as s:
        rows.append(consumer_catch_up(f"{pg_url}?schema={s}&spool=off", "PostgreSQL", events, 10_000))
    with pg_schema(pg_url) as s:
        rows.append(append_to_handler(f"{pg_url}?schema={s}&spool=off", "PostgreSQL", 20 if quick else 200, 50))
    return rows


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgres", default="postgresql://root@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for row in feed_rows(Path(tmp), args.postgres, args.quick):
            print(row)
