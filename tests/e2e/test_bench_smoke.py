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
