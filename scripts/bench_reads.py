"""Benchmark rows for the read paths: catch-up, follow-mode latency, state reads, verify and rebuild."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.store.url import parse_store_url
from itertrack.adapters.views.keeper import view_for
from itertrack.adapters.views.runner import catch_up as catch_up_views
from itertrack.adapters.views.verify import verify_store
from itertrack.domain import PerformanceTracker
from scripts.bench_support import Row, file_size, percentile, side_by_side

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


_ITERATION = "itertrack.domain.model.iteration:Iteration"
# The six events `seed_events` writes per iteration: (topic, JSON fields after the timestamp and event id).
_SEED_EVENTS = (
    (f"{_ITERATION}.Started", '"agent_id":"agent-%d","iteration_number":%d}'),
    (f"{_ITERATION}.PhaseChanged", '"phase":"scan_generation","error":null}'),
    (
        f"{_ITERATION}.MetricsRecorded",
        '"metrics":{"scan_generation_tokens":1500,"scan_generation_time_ms":812.5}}',
    ),
    (f"{_ITERATION}.PhaseChanged", '"phase":"backtest_execution","error":null}'),
    (f"{_ITERATION}.PhaseChanged", '"phase":"analysis","error":null}'),
    (f"{_ITERATION}.PhaseChanged", '"phase":"failed","error":"benchmark iteration"}'),
)


def _seed_rows(events: int) -> Iterator[tuple[uuid.UUID, int, str, bytes]]:
    """The stored events (originator id, version, topic, state) of `seed_events(tracker, events)`, as the
    tracker's mapper writes them (JSON of the pydantic events), for iterations one microsecond apart per event."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    tick = timedelta(microseconds=1)
    moment = start
    for n in range(events // 6):
        iteration_id = uuid.uuid4()
        for version, (topic, fields) in enumerate(_SEED_EVENTS, start=1):
            head = f'{{"timestamp":"{moment:%Y-%m-%dT%H:%M:%S.%f}Z",'
            if version == 1:
                head += f'"originator_topic":"{_ITERATION}",'
                body = fields % (n % 20, n)
            else:
                body = fields
            state = f'{head}"event_id":"{uuid.uuid4()}",{body}'.encode()
            yield iteration_id, version, topic, state
            moment += tick


def seed_stored_events(store: str, events: int) -> int:
    """Write what `seed_events` writes (iterations of six events), straight into the events table with the
    plain driver (one transaction; COPY on PostgreSQL): 1,000,000 events in seconds instead of minutes.

    The store must have been migrated (its tables exist) and hold no events yet. Returns the events written.
    """
    url = parse_store_url(store)
    if url.scheme == "sqlite":
        db = sqlite3.connect(url.path, isolation_level=None)
        try:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO stored_events (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
                ((i.hex, v, t, s) for i, v, t, s in _seed_rows(events)),
            )
            db.execute("COMMIT")
        finally:
            db.close()
    else:
        table = sql.Identifier(url.schema_name, "performancetracker_events")
        copy = sql.SQL("COPY {} (originator_id, originator_version, topic, state) FROM STDIN").format(table)
        with psycopg.connect(store.split("?", maxsplit=1)[0]) as conn, conn.cursor() as cur, cur.copy(copy) as out:
            for row in _seed_rows(events):
                out.write_row(row)
    return events // 6 * 6


def _floor_catch_up(store: str, tracker: PerformanceTracker, page: int) -> float:
    """Seconds to read every event row in pages and write the finished view rows with plain SQL."""
    tables = dict(view_for(store_of(tracker).factory).rows())
    url = parse_store_url(store)
    started = time.perf_counter()
    if url.scheme == "sqlite":
        _floor_sqlite(url.path, tables, page)
    else:
        _floor_postgres(store.split("?", maxsplit=1)[0], url.schema_name, tables, page)
    return time.perf_counter() - started


def _floor_sqlite(path: str, tables: dict[str, list[dict[str, Any]]], page: int) -> None:
    """Plain sqlite3: every event row read in pages of `page` by rowid, then the finished view rows (computed
    beforehand, not timed) inserted into copies of the view tables, one transaction per `page` rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    last = 0
    select = "SELECT rowid, * FROM stored_events WHERE rowid > ? ORDER BY rowid LIMIT ?"
    while rows := conn.execute(select, (last, page)).fetchall():
        last = rows[-1][0]
    for table, view_rows in tables.items():
        if not view_rows:
            continue
        copy = f"floor_{table}"
        conn.execute(f"CREATE TABLE IF NOT EXISTS {copy} AS SELECT * FROM {table} WHERE 0")  # noqa: S608  # names from the views' own tables
        cols = list(view_rows[0])
        insert = f"INSERT INTO {copy} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"  # noqa: S608  # names from the views' own rows; values bound
        for start in range(0, len(view_rows), page):
            conn.execute("BEGIN")
            conn.executemany(insert, [tuple(r[c] for c in cols) for r in view_rows[start : start + page]])
            conn.execute("COMMIT")
    conn.close()


def _floor_postgres(url: str, schema: str, tables: dict[str, list[dict[str, Any]]], page: int) -> None:
    """Plain psycopg: the same as `_floor_sqlite`, by notification id; `executemany` (pipelined) and one commit
    per `page` rows."""
    with psycopg.connect(url) as conn:
        last = 0
        events = sql.Identifier(schema, "performancetracker_events")
        select = sql.SQL("SELECT * FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s").format(events)
        while rows := conn.execute(select, (last, page)).fetchall():
            last = rows[-1][4]
        conn.commit()
        for table, view_rows in tables.items():
            if not view_rows:
                continue
            name = table.rsplit(".", 1)[-1].strip('"')
            copy = sql.Identifier(schema, f"floor_{name}")
            original = sql.Identifier(schema, name)
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} AS SELECT * FROM {} WHERE false").format(copy, original)
            )
            cols = list(view_rows[0])
            insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                copy, sql.SQL(", ").join(map(sql.Identifier, cols)), sql.SQL(", ").join(sql.Placeholder() * len(cols))
            )
            with conn.cursor() as cur:
                for start in range(0, len(view_rows), page):
                    cur.executemany(insert, [tuple(r[c] for c in cols) for r in view_rows[start : start + page]])
                    conn.commit()


def catch_up(store: str, label: str, events: int, target: float) -> Row:
    """Row: catch-up of `events` into all read models (the default batches), against reading the events and
    writing the same view rows with plain SQL. The events are written with the plain driver first (what
    `seed_events` writes, in seconds: `seed_stored_events`)."""
    with PerformanceTracker(store=store, migrate=True) as tracker:
        written = seed_stored_events(store, events)
        started = time.perf_counter()
        catch_up_views(tracker, view_for(store_of(tracker).factory))
        ours = written / (time.perf_counter() - started)
        theirs = written / _floor_catch_up(store, tracker, 500)
    ratio = ours / theirs
    return Row(
        path=f"catch-up of {written:,} events into all read models, {label}",
        measured=f"{ours:,.0f} events/s",
        floor=f"{theirs:,.0f} events/s (read rows + write view rows, plain SQL)",
        ratio=round(ratio, 2),
        target=f">= {target:,.0f}/s",
        met=ours >= target,
    )


def append_to_visible(store: str, label: str, appends: int, target_ms: float) -> Row:
    """Row: time from a committed change to its visibility in the current-phase view, `project --follow`."""
    with PerformanceTracker(store=store, migrate=True) as tracker:
        iid = tracker.start_iteration("bench", 1)
        view = view_for(store_of(tracker).factory)
        follower = subprocess.Popen(
            [ITERTRACK, "project", "--follow", "--store", store], stdout=subprocess.PIPE, text=True
        )
        try:
            assert follower.stdout is not None
            while "following" not in follower.stdout.readline():
                pass
            latencies = []
            for n in range(appends):
                tracker.update_phase(iid, ["scan_generation", "scan_execution", "backtest_execution"][n % 3])
                committed = time.perf_counter()
                version = n + 2
                deadline = committed + 10
                while view.current_phase(iid).last_version < version:
                    if time.perf_counter() > deadline:
                        raise TimeoutError(f"change {version} not visible after 10 s")
                    time.sleep(0.0005)
                latencies.append((time.perf_counter() - committed) * 1000)
                time.sleep(0.005)  # spaced appends: each latency is one change's, not a queue's
        finally:
            follower.terminate()
            follower.wait(timeout=30)
    p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
    return Row(
        path=f"append to visible (current-phase view, project --follow), {label}",
        measured=f"p50 {p50:.1f} / p95 {p95:.1f} / p99 {p99:.1f} / max {max(latencies):.1f} ms",
        floor="none",
        ratio=None,
        target=f"p99 <= {target_ms:.0f} ms",
        met=p99 <= target_ms,
    )


def state_reads(store: str, label: str, rounds: int, repeat: int) -> list[Row]:
    """Rows: a 20-event iteration's state by id, as of a version, as of an instant, against one indexed select.

    Warm rows read through a tracker whose replay cache already holds the iteration (as in a long-lived
    process that read it before: the dashboard, a host); cold rows through a tracker that keeps nothing
    (`ITERTRACK_REPLAY_CACHE_ENTRIES=0`: every read selects and decodes what it needs, as a one-shot
    `itertrack replay` does).
    """
    url = parse_store_url(store)
    rows = []
    with (
        PerformanceTracker(store=store, migrate=True) as tracker,
        PerformanceTracker(store=store, env={"ITERTRACK_REPLAY_CACHE_ENTRIES": "0"}) as cold,
    ):
        iid = tracker.start_iteration("bench", 1)
        for n in range(19):
            tracker.update_metrics(iid, {"analysis_tokens": n})
        events = tracker.history(iid)
        tenth, after = events[9].timestamp, events[-1].timestamp + timedelta(days=1)
        # The floor: one select of the iteration's rows by the primary key's leading column (prepared after
        # its first uses on PostgreSQL, cached by sqlite3), rows fetched, nothing decoded.
        if url.scheme == "sqlite":
            conn: Any = sqlite3.connect(url.path)

            def floor() -> object:
                return conn.execute("SELECT * FROM stored_events WHERE originator_id = ?", (iid.hex,)).fetchall()
        else:
            conn = psycopg.connect(store.split("?", maxsplit=1)[0], autocommit=True)
            select = sql.SQL("SELECT * FROM {} WHERE originator_id = %s").format(
                sql.Identifier(url.schema_name, "performancetracker_events")
            )

            def floor() -> object:
                return conn.execute(select, (iid,)).fetchall()

        cases: list[tuple[str, Callable[[], object], str]] = [
            ("by id", lambda: tracker.get_iteration(iid), "<= 2x"),
            ("as of a version, warm (no query)", lambda: tracker.get_iteration(iid, version=10), "<= 2x"),
            ("as of an instant, warm (no query)", lambda: tracker.get_iteration(iid, at=tenth), "<= 2x"),
            (
                "as of an instant after its last event, warm (one query for newer events)",
                lambda: tracker.get_iteration(iid, at=after),
                "<= 2x",
            ),
            ("as of a version, cold (selects and decodes 10 events)", lambda: cold.get_iteration(iid, version=10), ""),
            ("as of an instant, cold (selects and decodes 20 events)", lambda: cold.get_iteration(iid, at=tenth), ""),
        ]
        for what, call, target in cases:
            call()  # warms the cache for the warm rows
            ours, theirs = side_by_side(call, floor, rounds, repeat)
            ratio = ours / theirs
            rows.append(
                Row(
                    path=f"state of a 20-event iteration {what}, {label}",
                    measured=f"{ours:.3f} ms",
                    floor=f"{theirs:.3f} ms (one indexed select of its rows)",
                    ratio=round(ratio, 2),
                    target=target or "state it",
                    met=ratio <= 2 if target else None,
                )
            )
        conn.close()
    return rows


def at_scale(store: str, label: str, events: int, db_path: Path | None) -> list[Row]:
    """Rows: `verify` and `project --rebuild` over a large store, as seconds per million events."""
    with PerformanceTracker(store=store, migrate=True) as tracker:
        written = seed_stored_events(store, events)
        view = view_for(store_of(tracker).factory)
        started = time.perf_counter()
        view.reset()
        catch_up_views(tracker, view)
        rebuild = time.perf_counter() - started
        started = time.perf_counter()
        report = verify_store(tracker)
        verify = time.perf_counter() - started
        assert report.ok, report.problems[:3]
    per_m = 1_000_000 / written
    scale = "" if written >= 990_000 else f" (measured on {written:,}, scaled)"
    rows = [
        Row(
            path=f"project --rebuild, {label}",
            measured=f"{rebuild * per_m:.1f} s per million events{scale}",
            floor="none",
            ratio=None,
            target="<= 60 s per million on SQLite" if "SQLite" in label else "state it",
            met=(rebuild * per_m <= 60) if "SQLite" in label else None,
        ),
        Row(
            path=f"verify, {label}",
            measured=f"{verify * per_m:.1f} s per million events{scale}",
            floor="none",
            ratio=None,
            target="state it",
            met=None,
        ),
    ]
    if db_path is not None:
        rows.append(
            Row(
                path=f"database size, {label}",
                measured=f"{file_size(db_path) * per_m / 2**20:,.0f} MiB per million events (events + read models)",
                floor="none",
                ratio=None,
                target="state it",
                met=None,
            )
        )
    return rows


def catch_up_scaling(folder: Path, sizes: tuple[int, ...]) -> Row:
    """Scaling row: catch-up rate at growing store sizes on SQLite (it should stay flat, i.e. time grows
    linearly); each store seeded with the plain driver (`seed_stored_events`)."""
    rates = []
    for size in sizes:
        store = f"sqlite:///{folder / f'scale-{size}.db'}"
        with PerformanceTracker(store=store, migrate=True) as tracker:
            written = seed_stored_events(store, size)
            started = time.perf_counter()
            catch_up_views(tracker, view_for(store_of(tracker).factory))
            rates.append(written / (time.perf_counter() - started))
        for path in folder.glob(f"scale-{size}.db*"):
            path.unlink()  # a million events take about 500 MB
    spread = max(rates) / min(rates)
    return Row(
        path="catch-up rate at " + " / ".join(f"{s:,}" for s in sizes) + " events, SQLite",
        measured=" / ".join(f"{r:,.0f}" for r in rates) + " events/s",
        floor="none",
        ratio=round(spread, 2),
        target="flat (rate max/min <= 1.2)",
        met=spread <= 1.2,
        note="ratio here is fastest/slowest rate",
    )
