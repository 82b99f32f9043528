"""`make bench`: every path against the floor beneath it, in one run; prints a table and writes JSON.

Usage: .venv/bin/python -m scripts.bench [--quick] [--json bench-results.json] [--postgres URL] [--nats URL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from scripts.bench_async import async_rows
from scripts.bench_callgrind import callgrind_rows
from scripts.bench_feed import feed_rows
from scripts.bench_group import group_rows
from scripts.bench_otlp import otlp_rows
from scripts.bench_reads import append_to_visible, at_scale, catch_up, catch_up_scaling, state_reads
from scripts.bench_relay import relay_rows
from scripts.bench_support import Row, pg_schema
from scripts.bench_writes import write_rows


def machine(pg_url: str) -> dict[str, str]:
    """What the figures were measured on."""
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": "" if row is None else str(row[0]),
        "platform": platform.platform(),
    }


def run(quick: bool, pg_url: str, nats_url: str) -> list[Row]:
    """Every row; sizes shrink with --quick (a smoke run, not a measurement)."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, pg_schema(pg_url) as schema:
        folder = Path(tmp)
        rows += write_rows(folder, pg_url, schema, quick)
        rows += callgrind_rows(quick)
        with pg_schema(pg_url) as s:
            rows += async_rows(folder, pg_url, s, quick)
        with pg_schema(pg_url) as s:
            rows += group_rows(folder, pg_url, s, quick)
        with pg_schema(pg_url) as s:
            rows += state_reads(f"{pg_url}?schema={s}", "PostgreSQL", 3 if quick else 7, 30 if quick else 100)
        rows += state_reads(f"sqlite:///{folder / 'reads.db'}", "SQLite file", 3 if quick else 7, 30 if quick else 100)
        appends = 20 if quick else 200
        rows.append(append_to_visible(f"sqlite:///{folder / 'follow.db'}", "SQLite file", appends, 150))
        with pg_schema(pg_url) as s:
            rows.append(append_to_visible(f"{pg_url}?schema={s}", "PostgreSQL", appends, 50))
        events = 6_000 if quick else 1_000_002  # issue 18: catch-up of a million events
        rows.append(catch_up(f"sqlite:///{folder / 'catchup.db'}", "SQLite file", events, 50_000))
        with pg_schema(pg_url) as s:
            rows.append(catch_up(f"{pg_url}?schema={s}", "PostgreSQL", events, 25_000))
        big = 12_000 if quick else 1_000_000
        rows += at_scale(f"sqlite:///{folder / 'big.db'}", "SQLite file", big, folder / "big.db")
        with pg_schema(pg_url) as s:
            rows += at_scale(f"{pg_url}?schema={s}", "PostgreSQL", 12_000 if quick else 200_000, None)
        rows.append(catch_up_scaling(folder, (1_200, 6_000) if quick else (10_002, 1_000_002)))
        rows += feed_rows(folder, pg_url, quick)
        rows += otlp_rows(folder, quick)
        rows += relay_rows(folder, nats_url, quick)
    return rows


def print_table(rows: list[Row]) -> None:
    """The results as a plain-text table."""
    for row in rows:
        verdict = "-" if row.met is None else ("met" if row.met else "MISSED")
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}x "
        print(f"{row.path}\n    {row.measured}  |  floor: {row.floor}  |  {ratio}target {row.target}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the benchmark runs, measures nothing")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--postgres", default="postgresql://root@127.0.0.1:5432/test")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="the JetStream of the relay's rows")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = run(args.quick, args.postgres, args.nats)
    print_table(rows)
    result = {
        "machine": machine(args.postgres),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.json.write_text(json.dumps({**result, "rows": [r.as_json() for r in rows]}, indent=2) + "\n")
    print(f"\nwrote {args.json} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
