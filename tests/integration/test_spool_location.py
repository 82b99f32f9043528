"""The default spool file: one per user and store, found from any working directory; an old default is moved in."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import pytest
from documents_support import payload
from eventsourcing.persistence import StoredEvent

from itertrack.adapters.settings import load_settings
from itertrack.adapters.spool.location import default_spool_path, legacy_spool_path, open_spool
from itertrack.adapters.spool.sqlite_file import SQLiteSpool
from itertrack.adapters.store.url import parse_store_url
from itertrack.domain import PerformanceTracker

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
# Nothing listens on port 1: a tracker starts offline and spools; the spool commands read the file only.
UNREACHABLE = "postgresql://root@127.0.0.1:1/test?connect_timeout=1"


def status(store: str, cwd: Path, state: Path) -> tuple[int, dict[str, object]]:
    env = {**os.environ, "ITERTRACK_STATE_DIR": str(state)}
    result = subprocess.run(
        [ITERTRACK, "spool", "status", "--store", store, "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
    )
    return result.returncode, payload(result.stdout, "spool.status")


def test_spool_status_from_any_working_directory_sees_what_a_host_spooled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host in one folder spools; `spool status` run from another folder finds the same file and its changes."""
    state, host_dir, elsewhere = tmp_path / "state", tmp_path / "host", tmp_path / "elsewhere"
    host_dir.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(host_dir)
    with PerformanceTracker(store=UNREACHABLE, env={"ITERTRACK_STATE_DIR": str(state)}) as host:
        iid = host.start_iteration("agent-1", 1)
        host.update_phase(iid, "analysis")
        assert host.get_iteration(iid).spooled_changes == 2
    for cwd in (elsewhere, host_dir):
        code, shown = status(UNREACHABLE, cwd, state)
        assert (code, shown["waiting"], shown["stuck"]) == (3, 2, 0)
        assert Path(str(shown["path"])).parent == state
    assert list(host_dir.iterdir()) == []  # nothing left in the host's working directory


def test_the_default_spool_is_in_the_users_state_directory_created_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ITERTRACK_STATE_DIR: $XDG_STATE_HOME/itertrack (platformdirs), made 0700."""
    monkeypatch.delenv("ITERTRACK_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    url = parse_store_url("postgresql://root:secret@db.example:5433/perf?schema=team_a")
    spool = open_spool(url, load_settings())
    try:
        path = Path(spool.path)
        assert path.parent == tmp_path / "xdg" / "itertrack"
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.name.startswith("spool-db.example_5433_perf_team_a-")
        assert "secret" not in path.name
    finally:
        spool.close()


def test_the_spool_is_keyed_by_the_store_not_by_its_password_or_pool_options(tmp_path: Path) -> None:
    settings = load_settings({"ITERTRACK_STATE_DIR": str(tmp_path)})

    def path(url: str) -> Path:
        return default_spool_path(parse_store_url(url), settings)

    base = path("postgresql://root@127.0.0.1:5432/test")
    assert path("postgresql://root:pw@127.0.0.1:5432/test?pool_size=5&connect_timeout=9") == base
    for other in (
        "postgresql://root@127.0.0.1:5432/test?schema=other",
        "postgresql://root@127.0.0.1:5433/test",
        "postgresql://root@127.0.0.1:5432/prod",
        "postgresql://admin@127.0.0.1:5432/test",
    ):
        assert path(other) != base, other
    assert path("postgresql://root@127.0.0.1:5432/test?spool=/x/s.db") == base  # the default, as asked
    assert open_spool(parse_store_url("postgresql://root@h:1/d?spool=/x/s.db"), settings).path == "/x/s.db"


def add(spool: SQLiteSpool, iid: object, version: int) -> None:
    spool.add(iid, [StoredEvent(iid, version, "topic", b"{}")], None)  # type: ignore[arg-type]


def test_changes_left_in_the_old_default_spool_move_into_the_new_one_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An upgrade started in the folder where the old release spooled: its waiting changes (stuck marks too)
    follow those already in the new file, in their order, once; the old file is left empty (an old process
    may still have it open)."""
    old_dir, elsewhere = tmp_path / "old", tmp_path / "elsewhere"
    old_dir.mkdir()
    elsewhere.mkdir()
    url = parse_store_url(UNREACHABLE)
    settings = load_settings({"ITERTRACK_STATE_DIR": str(tmp_path / "state")})
    a, b, c = uuid4(), uuid4(), uuid4()
    old = SQLiteSpool(old_dir / legacy_spool_path(url))
    try:
        add(old, a, 2)
        add(old, b, 1)
        add(old, a, 3)
        old.mark_stuck(old.waiting(1)[0].id, "by hand")
    finally:
        old.close()
    monkeypatch.chdir(elsewhere)
    first = open_spool(url, settings)  # a new-release process elsewhere spooled before the upgrade here
    try:
        add(first, c, 1)
    finally:
        first.close()

    monkeypatch.chdir(old_dir)
    with caplog.at_level(logging.WARNING, logger="itertrack"):
        spool = open_spool(url, settings)
    try:
        moved = [(ch.iteration_id, [e.originator_version for e in ch.events], ch.stuck) for ch in spool.waiting(10)]
        assert moved == [(c, [1], None), (a, [2], "by hand"), (b, [1], None), (a, [3], None)]
    finally:
        spool.close()
    assert "moved 3 waiting change(s) from the old default spool" in caplog.text
    leftover = SQLiteSpool(legacy_spool_path(url))
    try:
        assert leftover.waiting(10) == []
    finally:
        leftover.close()
    again = open_spool(url, settings)
    try:
        assert len(again.waiting(10)) == 4  # nothing moved twice
    finally:
        again.close()
