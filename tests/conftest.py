"""Store fixtures: memory, a real SQLite file, and a fresh schema in a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from itertrack.domain import PerformanceTracker

PG_URL = os.environ.get("ITERTRACK_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_reachable() -> str | None:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return str(e)
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL's URL; unreachable fails the run under CI and skips locally."""
    problem = _pg_reachable()
    if problem is not None:
        message = f"PostgreSQL at {PG_URL} is unreachable: {problem}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return PG_URL


@pytest.fixture
def pg_store(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    """A store URL on a schema of its own (and a spool file of its own), dropped afterwards."""
    schema = f"itertrack_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield f"{postgres_url}?schema={schema}&spool={tmp_path / 'spool.db'}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> str:
    """A store URL on a real SQLite file in a temporary directory."""
    return f"sqlite:///{tmp_path / 'itertrack.db'}"


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest) -> str:
    """Each store kind in turn: the contract suite runs against all three."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_store"))
    return str(request.getfixturevalue("pg_store"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def durable_store(request: pytest.FixtureRequest) -> str:
    """The stores that survive the process and can be shared by several processes."""
    return str(request.getfixturevalue(f"{'pg' if request.param == 'postgresql' else 'sqlite'}_store"))


@pytest.fixture
def open_tracker() -> Iterator[Callable[..., PerformanceTracker]]:
    """Opens trackers (migrating their store) and closes them all at the end of the test."""
    opened: list[PerformanceTracker] = []

    def factory(store: str, **kwargs: object) -> PerformanceTracker:
        kwargs.setdefault("migrate", True)
        tracker = PerformanceTracker(store=store, **kwargs)  # type: ignore[arg-type]
        opened.append(tracker)
        return tracker

    yield factory
    for tracker in opened:
        tracker.close()


@pytest.fixture(autouse=True, scope="session")
def _state_dir_of_the_suite() -> Iterator[None]:
    """Default spool files (and any other per-user state) go to a folder of the run, never the user's own;
    CLI subprocesses inherit it. Tests of the default location set their own."""
    previous = os.environ.get("ITERTRACK_STATE_DIR")
    folder = tempfile.mkdtemp(prefix="itertrack-state-")
    os.environ["ITERTRACK_STATE_DIR"] = folder
    yield
    if previous is None:
        os.environ.pop("ITERTRACK_STATE_DIR", None)
    else:
        os.environ["ITERTRACK_STATE_DIR"] = previous
    shutil.rmtree(folder, ignore_errors=True)
