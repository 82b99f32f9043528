"""Probe of the PostgreSQL append (issue 18): a tracked change against a one-round-trip insert of the same row.

Self-contained (it imports only `itertrack`'s public API and psycopg), so the same file can be run by another
checkout's interpreter to compare codes:

    python scripts/probe_pg_append.py change  [--url URL] [--rounds 7] [--repeat 200]
    python scripts/probe_pg_append.py writers [--url URL] [--changes 500] [--runs 2]
    python scripts/probe_pg_append.py compare --base-python /other/checkout/.venv/bin/python [--runs 4]

`change`: `update_metrics` on a cached iteration (default store settings: pool, spool) beside the floor: the
same event row (same table shape: primary key, `bigserial` notification id with its unique index) inserted by
one prepared autocommit `INSERT` with plain psycopg, one round trip. Interleaved rounds; prints one JSON line
with the per-round medians in ms. `writers`: 8 processes each changing its own iteration, beside 8 processes
doing that floor insert, alternately; events/s. `compare`: runs `change` with both interpreters alternately
and prints medians, spreads and ratios. Wall-clock figures on a shared machine: report `uptime` with them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from itertrack.domain import PerformanceTracker

URL = os.environ.get("ITERTRACK_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")
TOPIC = "itertrack.domain.model.iteration:Iteration.MetricsRecorded"
STATE = (
    b'{"timestamp":"2026-11-30T07:51:47.838720Z","event_id":"ea571c9a-4ed8-4988-9bd6-873b72427267",'
    b'"metrics":{"analysis_tokens":2}}'
)


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    schema = f"itertrack_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


class OneRoundTripFloor:
    """The same row, inserted by one prepared autocommit INSERT (one round trip) into a table of the same shape."""

    def __init__(self, url: str, schema: str, *, async_commit: bool = False) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        if async_commit:
            self.conn.execute("SET synchronous_commit = off")
        table = sql.Identifier(schema, "floor_events")
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (originator_id uuid NOT NULL, originator_version bigint NOT NULL, "
                "topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
            ).format(table)
        )
        self.conn.execute(
            sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (notification_id)").format(
                sql.Identifier(f"floor_events_{uuid.uuid4().hex[:6]}_idx"), table
            )
        )
        self.statement = sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(table).as_bytes(self.conn)
        self.oid = uuid.uuid4()
        self.version = 0

    def insert(self) -> None:
        self.version += 1
        self.conn.execute(self.statement, (self.oid, self.version, TOPIC, STATE), prepare=True)


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _without_flush_waits(tracker: PerformanceTracker) -> None:
    """`synchronous_commit = off` on every connection of the tracker's pool (adapters' internals, probe only)."""
    from itertrack.adapters.bootstrap import store_of  # noqa: PLC0415  # only for --async-commit

    pool = store_of(tracker).recorder.datastore.pool  # type: ignore[attr-defined]
    held = [pool.getconn() for _ in range(pool.max_size)]
    for conn in held:
        conn.execute("SET synchronous_commit = off")
    for conn in held:
        pool.putconn(conn)


def change(url: str, rounds: int, repeat: int, *, async_commit: bool = False) -> dict[str, list[float]]:
    """Per-round medians (ms) of a tracked change and of the floor, interleaved. `async_commit`: both without
    waiting for the WAL flush (`synchronous_commit = off`), to see round trips and CPU without the disk."""
    with fresh_schema(url) as schema:
        floor = OneRoundTripFloor(url, schema, async_commit=async_commit)
        spool = "&spool=off" if async_commit else ""
        with PerformanceTracker(store=f"{url}?schema={schema}{spool}", migrate=True) as tracker:
            if async_commit:
                _without_flush_waits(tracker)
            iid = tracker.start_iteration("probe", 1)

            def tracked() -> None:
                tracker.update_metrics(iid, {"analysis_tokens": 2})

            for _ in range(100):  # warm: caches, prepared statements, pool
                tracked()
                floor.insert()
            ours, theirs = [], []
            for _ in range(rounds):
                theirs.append(median_ms(floor.insert, repeat))
                ours.append(median_ms(tracked, repeat))
        floor.conn.close()
    return {"ours": ours, "floor": theirs}


def _tracker_writer(store: str, changes: int, ready: Any, gate: Any, results: Any) -> None:
    with PerformanceTracker(store=store, migrate=False) as tracker:
        iid = tracker.start_iteration(f"writer-{uuid.uuid4().hex[:6]}", 1)
        for _ in range(20):
            tracker.update_metrics(iid, {"analysis_tokens": 2})
        ready.put(True)
        gate.wait(60)
        started = time.perf_counter()
        for _ in range(changes):
            tracker.update_metrics(iid, {"analysis_tokens": 2})
        results.put((changes, started, time.perf_counter()))


def _floor_writer(url: str, schema: str, changes: int, ready: Any, gate: Any, results: Any) -> None:  # noqa: PLR0917  # multiprocessing passes arguments by position
    floor = OneRoundTripFloor(url, schema)
    for _ in range(20):
        floor.insert()
    ready.put(True)
    gate.wait(60)
    started = time.perf_counter()
    for _ in range(changes):
        floor.insert()
    results.put((changes, started, time.perf_counter()))


def _per_second(target: Callable[..., None], args: tuple[Any, ...], processes: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    ready, gate, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, ready, gate, results)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)
    gate.set()
    done = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    return float(sum(int(d[0]) for d in done) / (max(d[2] for d in done) - min(d[1] for d in done)))


def writers(url: str, changes: int, runs: int) -> dict[str, list[float]]:
    """Events/s of 8 tracker processes and of 8 floor processes, alternately, `runs` times each."""
    with fresh_schema(url) as schema:
        store = f"{url}?schema={schema}&pool_size=1&max_overflow=1"
        PerformanceTracker(store=store, migrate=True).close()
        OneRoundTripFloor(url, schema).conn.close()
        ours, theirs = [], []
        for _ in range(runs):
            theirs.append(_per_second(_floor_writer, (url, schema, changes), 8))
            ours.append(_per_second(_tracker_writer, (store, changes), 8))
    return {"ours": ours, "floor": theirs}


def _summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"


def compare(base_python: str, runs: int, rounds: int, repeat: int, url: str, *, async_commit: bool) -> None:
    """`change` with this interpreter and `base_python` alternately; medians of round medians and ratios."""
    got: dict[str, dict[str, list[float]]] = {"base": {"ours": [], "floor": []}, "new": {"ours": [], "floor": []}}
    ratios: dict[str, list[float]] = {"base": [], "new": []}
    for _ in range(runs):
        for name, python in (("base", base_python), ("new", sys.executable)):
            out = subprocess.run(
                [python, __file__, "change", "--url", url, "--rounds", str(rounds), "--repeat", str(repeat)]
                + (["--async-commit"] if async_commit else []),
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                cwd="/",
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            for key in ("ours", "floor"):
                got[name][key] += result[key]
            ratios[name] += [o / f for o, f in zip(result["ours"], result["floor"], strict=True)]
    for name in ("base", "new"):
        print(f"{name}: tracked change ms {_summary(got[name]['ours'])}")
        print(f"{name}: floor ms          {_summary(got[name]['floor'])}")
        print(f"{name}: ratio per round   {_summary(ratios[name])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("what", choices=["change", "writers", "compare"])
    parser.add_argument("--url", default=URL)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--base-python")
    parser.add_argument("--async-commit", action="store_true", help="synchronous_commit = off on both sides")
    args = parser.parse_args()
    if args.what == "change":
        print(json.dumps(change(args.url, args.rounds, args.repeat, async_commit=args.async_commit)))
    elif args.what == "writers":
        print(json.dumps(writers(args.url, args.changes, args.runs)))
    else:
        if not args.base_python:
            parser.error("compare needs --base-python")
        compare(args.base_python, args.runs, args.rounds, args.repeat, args.url, async_commit=args.async_commit)


if __name__ == "__main__":
    main()
