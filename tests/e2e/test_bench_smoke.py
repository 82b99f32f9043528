"""`make bench` keeps working: its quick mode runs every row and writes the JSON (it measures nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from relay_support import require_nats

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.postgres
def test_quick_bench_writes_every_row(tmp_path: Path, postgres_url: str) -> None:
    """Every path of the benchmark table appears in the JSON with a measurement and a target."""
    require_nats()  # the relay's rows
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "scripts.bench", "--quick", "--json", str(out), "--postgres", postgres_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads(out.read_text())
    paths = [row["path"] for row in data["rows"]]
    for expected in (
        "tracked change, SQLite file",
        "tracked change, PostgreSQL",
        "tracked call, whole iterations of 12 calls, SQLite file",
        "tracked call, whole iterations of 12 calls, PostgreSQL",
        "whole iteration",
        "8 writer processes, PostgreSQL",
        "catch-up of",
        "append to visible",
        "state of a 20-event iteration as of an instant",
        "project --rebuild",
        "verify, SQLite file",
        "database size",
        "tracked change vs history length",
        "catch-up rate at",
        "async tracker: event-loop lag",
        "async tracker: 20 concurrent iterations, durable changes/s",
        "async tracker: one iteration alone",
        "16 threads of the sync tracker, distinct iterations, group commit, SQLite file",
        "16 threads of the sync tracker, distinct iterations, group commit, PostgreSQL",
        "feed: consumer writing one row per event (exactly-once), catch-up of 6,000 events, SQLite file",
        "feed: consumer writing one row per event (exactly-once), catch-up of 6,000 events, PostgreSQL",
        "feed: append to handler (consume log --follow), PostgreSQL",
        "OTLP export of finished iterations",
        "to the local JetStream, pages of",
        "one handle() per event",
    ):
        assert any(expected in p for p in paths), expected
    assert all(row["measured"] and row["target"] for row in data["rows"])
    counted = [row for row in data["rows"] if row["path"].startswith("instructions per tracked change")]
    assert [row["path"].rsplit(", ", 1)[-1] for row in counted] == ["memory store", "SQLite file"]
    for row in counted:  # measured (valgrind present), each beside the floor's count with the ratio
        assert row["measured"].endswith(" instructions"), row
        assert "instructions per raw sqlite3 autocommit insert" in row["floor"], row
        assert row["ratio"] > 0, row
    assert data["quick"] is True
    assert data["machine"]["cpus"]


def test_sqlite_floor_is_one_statement_with_the_stores_durability(tmp_path: Path) -> None:
    """The SQLite floor sends one INSERT per row (SQLite's implicit transaction, no BEGIN or COMMIT statement),
    on a WAL file with the synchronous level of the store's writer connection."""
    from itertrack.domain import PerformanceTracker  # noqa: PLC0415  # the bench's own imports, as it runs them
    from scripts.bench_support import SQLiteFloor  # noqa: PLC0415
    from scripts.bench_writes import check_sqlite_durability  # noqa: PLC0415

    floor = SQLiteFloor(tmp_path / "floor.db")
    sent: list[str] = []
    floor.conn.set_trace_callback(sent.append)
    floor.insert()
    floor.insert()
    assert [s.split(" ", 2)[:2] for s in sent] == [["INSERT", "INTO"], ["INSERT", "INTO"]], sent
    assert floor.conn.execute("SELECT count(*) FROM stored_events").fetchone() == (2,)
    assert floor.durability() == ("wal", 2)  # WAL, FULL
    with PerformanceTracker(store=f"sqlite:///{tmp_path / 'store.db'}", migrate=True) as tracker:
        check_sqlite_durability(tracker, floor)  # the store's writer agrees
        floor.conn.execute("PRAGMA synchronous=NORMAL")
        with pytest.raises(RuntimeError, match="synchronous"):
            check_sqlite_durability(tracker, floor)


@pytest.mark.postgres
def test_postgres_floor_is_one_round_trip(tmp_path: Path, postgres_url: str) -> None:
    """The PostgreSQL floor commits each row in one client-server round trip: autocommit, one Sync (one
    ReadyForQuery back) per insert in libpq's trace, the statement prepared on the server."""
    from psycopg import sql  # noqa: PLC0415
    from psycopg.pq import Trace  # noqa: PLC0415

    from scripts.bench_support import PostgresFloor, pg_schema  # noqa: PLC0415

    with pg_schema(postgres_url) as schema:
        floor = PostgresFloor(postgres_url, schema)
        try:
            floor.insert()  # prepares the statement
            trace = tmp_path / "libpq.trace"
            with trace.open("w") as out:
                floor.conn.pgconn.trace(out.fileno())
                floor.conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
                floor.insert()
                floor.insert()
                floor.conn.pgconn.untrace()
            lines = trace.read_text().splitlines()
            ready = [line for line in lines if "ReadyForQuery" in line]
            assert len(ready) == 2, lines
            assert not [line for line in lines if "\tParse\t" in line], lines  # prepared: bind and execute only
            count = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "floor_events"))
            assert floor.conn.execute(count).fetchone() == (3,)
        finally:
            floor.close()
