"""Measures read-model catch-up (events/s) and `verify` (seconds per million events) on fresh stores.

Usage: .venv/bin/python -m scripts.read_model_rates [--events 50000] [--batch-size 500] [--postgres URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from itertrack.adapters.read_models import CatchUp, view_for
from itertrack.adapters.verify import verify_store
from itertrack.domain import PerformanceTracker
from scripts.bench_support import seed_events


def measure(store: str, events: int, batch_size: int) -> tuple[int, float, float]:
    """Events written, catch-up events/s, and verify seconds per million events."""
    with PerformanceTracker(store=store, migrate=True) as tracker:
        written = seed_events(tracker, events)
        catch_up = CatchUp(tracker, view_for(tracker.factory), batch_size)
        started = time.perf_counter()
        applied = catch_up.run()
        elapsed = time.perf_counter() - started
        assert applied == written, (applied, written)
        started = time.perf_counter()
        report = verify_store(tracker)
        verified = time.perf_counter() - started
        assert report.ok, report.problems[:3]
        assert report.events == written
        return applied, applied / elapsed, verified / applied * 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--postgres", default="postgresql://root@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        applied, rate, per_million = measure(f"sqlite:///{Path(tmp) / 'rate.db'}", args.events, args.batch_size)
        print(
            f"SQLite file:  catch-up {rate:,.0f} events/s, verify {per_million:,.1f} s per million events "
            f"({applied:,} events, batch {args.batch_size})"
        )
    schema = f"itertrack_rate_{uuid.uuid4().hex[:8]}"
    try:
        applied, rate, per_million = measure(f"{args.postgres}?schema={schema}", args.events, args.batch_size)
        print(
            f"PostgreSQL:   catch-up {rate:,.0f} events/s, verify {per_million:,.1f} s per million events "
            f"({applied:,} events, batch {args.batch_size})"
        )
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
