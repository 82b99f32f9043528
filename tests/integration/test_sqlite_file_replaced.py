"""The SQLite store's file deleted, renamed away or replaced under a running tracker (issue 11, item 9).

SQLite in WAL mode keeps writing through its open handles to a file the path no longer names, so without
the file check these writes are acknowledged and lost. Each scenario here is a real file in tmp_path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.cli import app as _commands  # noqa: F401  # registers the commands on `app`
from itertrack.adapters.cli import common
from itertrack.adapters.cli import iterations as cli_iterations
from itertrack.adapters.cli.common import app
from itertrack.adapters.store.sqlite import SQLiteRecorder
from itertrack.adapters.views.keeper import ReadModels
from itertrack.domain import (
    IterationNotFoundError,
    PerformanceTracker,
    StoreNotMigratedError,
    StoreReplacedError,
)

Open = Callable[..., PerformanceTracker]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def running(path: Path, open_tracker: Open) -> tuple[PerformanceTracker, UUID]:
    """A tracker on the file with one iteration it has written to (so its connections are open)."""
    tracker = open_tracker(f"sqlite:///{path}")
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_phase(iid, "scan_generation")
    return tracker, iid


def _remove(path: Path, *, with_wal_and_shm: bool) -> None:
    path.unlink()
    if with_wal_and_shm:
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def _versions(path: Path, iid: UUID) -> list[int]:
    """The versions a fresh tracker finds stored for the iteration (none if it finds no such iteration)."""
    with PerformanceTracker(store=f"sqlite:///{path}", migrate=False) as fresh:
        try:
            return [e.originator_version for e in fresh.history(iid)]
        except IterationNotFoundError:
            return []


@pytest.mark.parametrize("with_wal_and_shm", [False, True], ids=["db-only", "db-wal-shm"])
def test_deleted_file_refuses_writes_and_reads(
    running: tuple[PerformanceTracker, UUID], path: Path, with_wal_and_shm: bool
) -> None:
    """After `rm store.db` every write and read raises StoreReplacedError naming the path; no file is re-created,
    so nothing was acknowledged that a fresh tracker on the path would not find."""
    tracker, iid = running
    _remove(path, with_wal_and_shm=with_wal_and_shm)
    with pytest.raises(StoreReplacedError, match=r"was deleted or renamed away.*the change was not saved") as caught:
        tracker.update_phase(iid, "scan_execution")
    assert caught.value.path == str(path)
    with pytest.raises(StoreReplacedError, match="deleted"):
        tracker.update_metrics(iid, {"scan_execution_tokens": 5})
    with pytest.raises(StoreReplacedError, match="deleted"):
        tracker.start_iteration("agent-1", 2)
    with pytest.raises(StoreReplacedError, match="nothing was read"):
        tracker.get_iteration(iid)
    with pytest.raises(StoreReplacedError, match="nothing was read"):
        tracker.get_record(iid)
    assert not path.exists()
    with pytest.raises(StoreNotMigratedError, match="does not exist"):
        PerformanceTracker(store=f"sqlite:///{path}", migrate=False)


def test_first_write_after_the_deletion_creates_no_file(path: Path, open_tracker: Open) -> None:
    """A tracker that has not written yet, its file deleted: its first write refuses without connecting,
    so no empty file appears at the path for the next process to take for the store."""
    tracker = open_tracker(f"sqlite:///{path}")
    path.unlink()
    with pytest.raises(StoreReplacedError, match="was deleted or renamed away"):
        tracker.start_iteration("agent-1", 1)
    assert not path.exists()


def test_file_replaced_by_another_database_refuses(
    running: tuple[PerformanceTracker, UUID], path: Path, tmp_path: Path
) -> None:
    """Another SQLite database moved over the path (a restore, another tool): the tracker refuses, and the
    refused change is nowhere a fresh tracker on the path looks.

    (What else the fresh tracker finds is SQLite's: the -wal and -shm beside the path still belong to the old
    file, and SQLite pairs them with the new one. The README says to replace a store only with no tracker on it.)
    """
    tracker, iid = running
    other = tmp_path / "other.db"
    with PerformanceTracker(store=f"sqlite:///{other}") as elsewhere:
        elsewhere.start_iteration("agent-2", 1)
    os.replace(other, path)
    with pytest.raises(StoreReplacedError, match="was replaced by another file"):
        tracker.update_phase(iid, "scan_execution")
    with pytest.raises(StoreReplacedError, match="was replaced by another file"):
        tracker.history(iid)
    assert 3 not in _versions(path, iid)


def test_file_deleted_and_recreated_by_another_tracker_refuses(
    running: tuple[PerformanceTracker, UUID], path: Path, open_tracker: Open
) -> None:
    """`rm store.db*`, then another process starts on the path and creates a fresh store: the first tracker's
    changes are refused, not written to the deleted file."""
    tracker, iid = running
    _remove(path, with_wal_and_shm=True)
    newcomer = open_tracker(f"sqlite:///{path}")
    newcomer.start_iteration("agent-2", 1)
    with pytest.raises(StoreReplacedError, match="was replaced by another file"):
        tracker.update_phase(iid, "scan_execution")
    with pytest.raises(StoreReplacedError, match="was replaced by another file"):
        tracker.get_iteration(iid)
    newcomer.start_iteration("agent-2", 2)  # the newcomer's own file is fine


def test_file_renamed_away_refuses_until_renamed_back(running: tuple[PerformanceTracker, UUID], path: Path) -> None:
    """Renamed away: refused. Renamed back: the same file again, so the tracker goes on, and a fresh tracker
    finds exactly the acknowledged changes."""
    tracker, iid = running
    aside = path.with_name("aside.db")
    path.rename(aside)
    with pytest.raises(StoreReplacedError, match="was deleted or renamed away"):
        tracker.update_phase(iid, "scan_execution")
    with pytest.raises(StoreReplacedError, match="was deleted or renamed away"):
        tracker.get_iteration(iid)
    aside.rename(path)
    tracker.update_phase(iid, "backtest_execution")
    assert tracker.get_iteration(iid).phase == "backtest_execution"
    assert _versions(path, iid) == [1, 2, 3]  # started, scan_generation, backtest_execution: the refused one absent


def test_read_models_on_a_deleted_file_refuse(path: Path, open_tracker: Open) -> None:
    """The read-model views use the store's file too: their queries (and catch-up writes) refuse."""
    tracker = open_tracker(f"sqlite:///{path}")
    iid = tracker.start_iteration("agent-1", 1)
    with ReadModels(tracker, background=False) as views:
        assert views.current_phase(iid).phase == "initializing"
        path.unlink()
        with pytest.raises(StoreReplacedError, match="deleted"):
            views.iterations()
    assert not path.exists()


class _DeletesBeforeCommit:
    """A writer connection that deletes the store's file just before COMMIT reaches SQLite (the narrowest race)."""

    def __init__(self, conn: Any, path: Path) -> None:
        self._conn = conn
        self._path = path

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and self._path.exists():
            self._path.unlink()
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_file_deleted_at_the_commit_is_not_acknowledged(running: tuple[PerformanceTracker, UUID], path: Path) -> None:
    """A file deleted between the last check and the commit: the commit lands in the deleted file, and the
    check after it refuses to acknowledge (the error says where the change went)."""
    tracker, iid = running
    recorder = store_of(tracker).recorder
    assert isinstance(recorder, SQLiteRecorder)
    # Fault injection: the writer connection is private to the recorder.
    recorder._writer_conn = _DeletesBeforeCommit(recorder._writer(), path)  # type: ignore[assignment]  # noqa: SLF001
    with pytest.raises(StoreReplacedError, match="the change was written to the file no longer at that path"):
        tracker.update_phase(iid, "scan_execution")


def test_two_processes_on_one_file_are_not_refused(running: tuple[PerformanceTracker, UUID], path: Path) -> None:
    """The normal sharing: another process migrates and writes the same file; both go on and see each other."""
    tracker, iid = running
    code = (
        "import sys\n"
        "from itertrack.domain import PerformanceTracker\n"
        "with PerformanceTracker(store=sys.argv[1]) as t:\n"
        "    t.migrate()\n"
        "    i = t.start_iteration('agent-2', 1)\n"
        "    t.update_phase(sys.argv[2], 'scan_execution')\n"
        "    print(i)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, f"sqlite:///{path}", str(iid)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    theirs = UUID(child.stdout.strip())
    tracker.update_phase(iid, "backtest_execution")
    assert tracker.get_iteration(iid).version == 4
    assert tracker.get_iteration(theirs).agent_id == "agent-2"


def test_relative_path_survives_a_change_of_directory(
    tmp_path: Path, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative store path names the file SQLite opened, not whatever is at that name in a later directory."""
    monkeypatch.chdir(tmp_path)
    tracker = open_tracker("sqlite:///rel.db")
    iid = tracker.start_iteration("agent-1", 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    tracker.update_phase(iid, "scan_generation")
    assert tracker.get_iteration(iid).version == 2
    assert not (elsewhere / "rel.db").exists()


@pytest.fixture
def deleting_open_tracker(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """The CLI's trackers, with the store's file deleted right after one is opened."""
    real = common.open_tracker

    def open_then_delete(store: str, **kwargs: Any) -> PerformanceTracker:
        tracker = real(store, **kwargs)
        path.unlink()
        return tracker

    monkeypatch.setattr(cli_iterations, "open_tracker", open_then_delete)


def test_cli_reports_a_deleted_file_in_one_line(
    running: tuple[PerformanceTracker, UUID], path: Path, deleting_open_tracker: None
) -> None:
    """A command whose store file disappears under it prints one error line naming the file and exits 1."""
    _, iid = running
    result = CliRunner().invoke(app, ["show", str(iid), "--store", f"sqlite:///{path}"])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"itertrack: error: store file {path} was deleted or renamed away")
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_library_transaction_on_a_file_renamed_mid_way_rolls_back(
    running: tuple[PerformanceTracker, UUID], path: Path
) -> None:
    """The library's own transactions (views, tracking) check again before committing: a file renamed away
    during one rolls it back, so renamed back it holds nothing of it."""
    tracker, _ = running
    recorder = store_of(tracker).recorder
    assert isinstance(recorder, SQLiteRecorder)
    datastore = recorder.datastore
    aside = path.with_name("aside.db")

    def insert_renaming_the_file_midway() -> None:
        with datastore.transaction(commit=True) as c:
            c.execute("INSERT INTO tracking (application_name, notification_id) VALUES ('probe', 1)")
            path.rename(aside)

    with pytest.raises(StoreReplacedError, match="the change was not saved"):
        insert_renaming_the_file_midway()
    aside.rename(path)
    with datastore.transaction(commit=False) as c:
        c.execute("SELECT count(*) FROM tracking WHERE application_name = 'probe'")
        assert c.fetchone()[0] == 0
