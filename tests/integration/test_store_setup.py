"""Choosing, migrating and failing to reach a store: typed errors, no passwords, nothing half-made."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.store.postgres import PostgresRecorder
from itertrack.domain import (
    InvalidInputError,
    PerformanceTracker,
    StoreConfigError,
    StoreError,
    StoreNotMigratedError,
    StoreUnavailableError,
)

Open = Callable[..., PerformanceTracker]


@pytest.mark.postgres
def test_postgres_needs_an_explicit_migrate(pg_store: str, open_tracker: Open) -> None:
    """A tracker on an unmigrated schema says which command creates the tables; after it, it works."""
    with pytest.raises(StoreNotMigratedError, match="itertrack migrate --store"):
        PerformanceTracker(store=pg_store)
    open_tracker(pg_store, migrate=True).close()
    tracker = PerformanceTracker(store=pg_store)
    try:
        assert tracker.get_iteration(tracker.start_iteration("agent-1", 1)).version == 1
    finally:
        tracker.close()


def test_unreachable_postgres_is_a_typed_error_without_the_password() -> None:
    """A refused connection raises StoreUnavailableError; the password never appears."""
    with pytest.raises(StoreUnavailableError) as caught:
        # spool=off: with a spool the tracker would start offline instead (tests/integration/test_spool.py).
        PerformanceTracker(store="postgresql://root:hunter2@127.0.0.1:1/test?connect_timeout=1&spool=off")
    message = str(caught.value)
    assert "hunter2" not in message
    assert "root:***@127.0.0.1:1" in message
    assert "hunter2" not in repr(caught.value.__cause__)


def test_sqlite_file_is_migrated_on_first_use(tmp_path: Path) -> None:
    """The embedded store creates its file and tables the first time it is used."""
    path = tmp_path / "fresh.db"
    with PerformanceTracker(store=f"sqlite:///{path}") as tracker:
        tracker.start_iteration("agent-1", 1)
    assert path.exists()


def test_sqlite_without_migration_names_the_missing_tables(tmp_path: Path) -> None:
    """Asked not to migrate, a database of another application raises naming our tables and the command."""
    other = tmp_path / "other-app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    expected = r"has no table\(s\) stored_events, agent_iterations, tracking, iteration_current"
    with pytest.raises(StoreNotMigratedError, match=expected):
        PerformanceTracker(store=f"sqlite:///{other}", migrate=False)


def test_sqlite_without_migration_refuses_a_missing_file(tmp_path: Path) -> None:
    """Asked not to migrate, a missing SQLite file is reported and not created."""
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreNotMigratedError, match="does not exist"):
        PerformanceTracker(store=f"sqlite:///{missing}", migrate=False)
    assert not missing.exists()


def test_sqlite_in_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    """A path whose directory does not exist gives a clear StoreUnavailableError."""
    with pytest.raises(StoreUnavailableError, match="unable to open database file"):
        PerformanceTracker(store=f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")


def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    """A corrupted SQLite file gives StoreUnavailableError, not a traceback from the driver."""
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an sqlite database, just bytes" * 100)
    with pytest.raises(StoreUnavailableError, match="not a database"):
        PerformanceTracker(store=f"sqlite:///{path}")


def test_a_truncated_database_file_is_unavailable(tmp_path: Path) -> None:
    """A store file cut short (a copy interrupted, a full disk) gives a typed error when read, not a traceback."""
    path = tmp_path / "cut.db"
    with PerformanceTracker(store=f"sqlite:///{path}") as tracker:
        ids = [tracker.start_iteration(f"agent-{n}", n) for n in range(300)]
        for iid in ids:
            tracker.update_metrics(iid, {"analysis_tokens": 1, "analysis_time_ms": 2.5})
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 3)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("itertrack")), "show", str(ids[-1]), "--store", f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("itertrack: error:"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # Opening may already notice; reading the cut-off pages certainly does.
    with pytest.raises(StoreUnavailableError, match="malformed"), PerformanceTracker(store=f"sqlite:///{path}") as cut:
        cut.get_iteration(ids[-1])


def test_store_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without store=, ITERTRACK_STORE chooses the store."""
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("ITERTRACK_STORE", f"sqlite:///{path}")
    with PerformanceTracker() as tracker:
        tracker.start_iteration("agent-1", 1)
    assert path.exists()


def test_default_store_is_itertrack_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no store= and no ITERTRACK_STORE, the tracker writes ./itertrack.db."""
    monkeypatch.delenv("ITERTRACK_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    with PerformanceTracker() as tracker:
        iid = tracker.start_iteration("agent-1", 1)
    with PerformanceTracker(store="sqlite:///itertrack.db") as again:
        assert again.get_iteration(iid).agent_id == "agent-1"


@pytest.mark.postgres
def test_stray_driver_settings_in_the_environment_are_ignored(
    pg_store: str, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POSTGRES_* variables (plain or app-prefixed) cannot redirect a tracker away from its store URL."""
    monkeypatch.setenv("POSTGRES_HOST", "203.0.113.1")
    monkeypatch.setenv("PERFORMANCETRACKER_POSTGRES_PORT", "1")
    monkeypatch.setenv("POSTGRES_ENABLE_DB_FUNCTIONS", "y")
    tracker = open_tracker(pg_store)
    iid = tracker.start_iteration("agent-1", 1)
    assert tracker.get_iteration(iid).version == 1
    # The database functions would bypass the recorder hook that writes the record: it must be written.
    tracker.save_iteration({"id": iid, "agent_id": "agent-1", "iteration_number": 1})
    assert tracker.get_record(iid) is not None


@pytest.mark.parametrize("store", ["mysql://root@localhost/db", "sqlite://", 42])
def test_malformed_store_is_refused(store: object) -> None:
    """A store that is not a supported URL raises StoreConfigError naming `store`."""
    with pytest.raises(StoreConfigError, match="store"):
        PerformanceTracker(store=store)  # type: ignore[arg-type]


@pytest.mark.postgres
def test_store_lost_mid_run_without_a_spool_is_a_typed_error(pg_store: str, open_tracker: Open) -> None:
    """With spool=off, a store that stops answering after start-up raises StoreUnavailableError, not a driver error."""
    tracker = open_tracker(pg_store.split("&spool=", maxsplit=1)[0] + "&spool=off")
    iid = tracker.start_iteration("agent-1", 1)
    store_of(tracker).factory.datastore.pool.close()  # type: ignore[attr-defined]
    with pytest.raises(StoreUnavailableError, match="store is unavailable"):
        tracker.update_phase(iid, "analysis")


def test_an_empty_store_url_is_refused() -> None:
    """store="" is a mistake, not a request for the default store."""
    with pytest.raises(StoreConfigError, match="store=''"):
        PerformanceTracker(store="")


def test_a_closed_tracker_refuses_work(tmp_path: Path) -> None:
    """After close(), changes and reads raise StoreError instead of quietly reopening connections."""
    tracker = PerformanceTracker(store=f"sqlite:///{tmp_path / 'c.db'}")
    iid = tracker.start_iteration("agent-1", 1)
    tracker.close()
    with pytest.raises(StoreError, match="closed"):
        tracker.update_phase(iid, "analysis")
    with pytest.raises(StoreError, match="closed"):
        tracker.get_iteration(iid)


def test_malformed_settings_name_themselves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad yes/no setting (given or from the environment) and a clock without the clock methods are typed errors;
    no store file is created."""
    store = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(StoreConfigError, match="ITERTRACK_MIGRATE='maybe'"):
        PerformanceTracker(store=store, env={"ITERTRACK_MIGRATE": "maybe"})
    monkeypatch.setenv("ITERTRACK_FORWARD", "sometimes")
    with pytest.raises(StoreConfigError, match="ITERTRACK_FORWARD='sometimes'"):
        PerformanceTracker(store=store)
    monkeypatch.delenv("ITERTRACK_FORWARD")
    assert not (tmp_path / "s.db").exists()
    with pytest.raises(InvalidInputError, match="clock="):
        PerformanceTracker(store=store, clock=object())  # type: ignore[arg-type]


@pytest.mark.postgres
def test_a_silent_network_is_bounded_by_the_connect_timeout(pg_store: str, open_tracker: Open) -> None:
    """Every pooled connection carries keepalives and a TCP send limit of 3 x connect_timeout (libpq settings),
    so a network that drops packets ends a call in seconds, not after TCP's many minutes."""
    tracker = open_tracker(pg_store + "&connect_timeout=3", migrate=True)
    recorder = store_of(tracker).recorder
    assert isinstance(recorder, PostgresRecorder)
    with recorder.datastore.get_connection() as conn:
        settings = {o.keyword.decode(): (o.val or b"").decode() for o in conn.pgconn.info}
    assert (settings["connect_timeout"], settings["keepalives"], settings["tcp_user_timeout"]) == ("3", "1", "9000")
    assert (settings["keepalives_idle"], settings["keepalives_interval"], settings["keepalives_count"]) == (
        "9",
        "1",
        "3",
    )
