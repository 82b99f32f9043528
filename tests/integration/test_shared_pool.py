"""Trackers of one process on one PostgreSQL store share one connection pool (issue 13): the server sees at most
the pool's limit of connections however many trackers a host opens, and the pool closes with the last of them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from spool_support import without_spool
from support import wait_for

from itertrack.adapters.bootstrap import spooling_writer, store_of
from itertrack.adapters.library_hooks import postgres_pool
from itertrack.adapters.read_models import ReadModels
from itertrack.adapters.store.postgres import PostgresRecorder
from itertrack.domain import PerformanceTracker, StoreConfigError

pytestmark = pytest.mark.postgres

Open = Callable[..., PerformanceTracker]


@pytest.fixture
def app_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """A libpq application_name (PGAPPNAME) for every connection this test opens from now on, so the server's
    pg_stat_activity tells this test's connections from every other client's."""
    name = f"itertrack-pool-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PGAPPNAME", name)
    return name


def server_connections(postgres_url: str, app_name: str) -> int:
    """How many sessions the server holds for connections opened under `app_name`."""
    with psycopg.connect(postgres_url, autocommit=True, application_name="itertrack-pool-count") as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app_name,)).fetchone()
    assert row is not None
    return int(row[0])


def datastore_of(tracker: PerformanceTracker) -> object:
    recorder = store_of(tracker).recorder
    assert isinstance(recorder, PostgresRecorder)
    return recorder.datastore


@pytest.fixture
def other_schema(postgres_url: str) -> Iterator[str]:
    """A second schema, migrated by the test that uses it, dropped afterwards."""
    schema = f"itertrack_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_32_trackers_in_one_process_use_one_pool_and_every_change_lands(
    pg_store: str, postgres_url: str, app_name: str, open_tracker: Open
) -> None:
    """As the issue tried it: 32 trackers, each changing its own iteration from its own thread. Before, each
    tracker kept a pool of its own (96 server sessions; past ~33 trackers the server refused with "too many
    clients" and the trackers spooled)."""
    open_tracker(pg_store, migrate=True).close()
    trackers = [open_tracker(pg_store, migrate=False) for _ in range(32)]

    def change(i: int) -> None:
        tracker = trackers[i]
        iid = tracker.start_iteration(f"agent-{i}", 1)
        tracker.update_metrics(iid, {"analysis_tokens": i})

    with ThreadPoolExecutor(max_workers=32) as workers:
        list(workers.map(change, range(32)))
    limit = 2 + 8  # the default ITERTRACK_POOL_SIZE + ITERTRACK_MAX_OVERFLOW
    assert server_connections(postgres_url, app_name) <= limit
    assert sum(spooling_writer(t).changes_spooled for t in trackers) == 0
    assert spooling_writer(trackers[0]).spool.count() == 0
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        schema = pg_store.split("schema=", maxsplit=1)[1].split("&", maxsplit=1)[0]
        row = admin.execute(
            sql.SQL("SELECT count(DISTINCT originator_id), count(*) FROM {}.performancetracker_events").format(
                sql.Identifier(schema)
            )
        ).fetchone()
    assert row == (32, 64)


def test_the_pool_outlives_every_tracker_but_the_last_closed_in_any_order(
    pg_store: str, postgres_url: str, app_name: str, open_tracker: Open
) -> None:
    """Closing a tracker (even twice) leaves the others working; the last one's close ends the pool's sessions."""
    first, middle, last = (open_tracker(pg_store, migrate=True) for _ in range(3))
    iid = first.start_iteration("agent-1", 1)
    assert datastore_of(first) is datastore_of(middle) is datastore_of(last)
    middle.close()
    middle.close()
    store_of(middle).close()  # the store's own close, once more: still only one hold released
    first.update_phase(iid, "analysis")
    last.update_metrics(iid, {"analysis_tokens": 2})
    last.close()
    assert first.get_iteration(iid).version == 3
    assert server_connections(postgres_url, app_name) >= 1
    first.close()
    wait_for(lambda: server_connections(postgres_url, app_name) == 0, 10, "the pool's sessions to end")


def test_different_schemas_and_connection_settings_get_different_pools(
    pg_store: str, postgres_url: str, other_schema: str, open_tracker: Open
) -> None:
    """Only the same store with the same connection settings shares; the spool file does not count."""
    one = open_tracker(pg_store, migrate=True)
    same = open_tracker(without_spool(pg_store), migrate=False)
    elsewhere = open_tracker(f"{postgres_url}?schema={other_schema}&spool=off", migrate=True)
    bigger = open_tracker(pg_store + "&pool_size=3", migrate=False)
    assert datastore_of(one) is datastore_of(same)
    assert datastore_of(elsewhere) is not datastore_of(one)
    assert datastore_of(bigger) is not datastore_of(one)


def test_the_pool_limits_are_settings_and_a_url_option_wins(pg_store: str, open_tracker: Open) -> None:
    tracker = open_tracker(pg_store, migrate=True, env={"ITERTRACK_POOL_SIZE": "3", "ITERTRACK_MAX_OVERFLOW": "1"})
    pool = postgres_pool(datastore_of(tracker))  # type: ignore[arg-type]
    assert (pool.min_size, pool.max_size) == (3, 4)
    from_url = open_tracker(pg_store + "&max_overflow=0", migrate=False, env={"ITERTRACK_MAX_OVERFLOW": "5"})
    pool = postgres_pool(datastore_of(from_url))  # type: ignore[arg-type]
    assert (pool.min_size, pool.max_size) == (2, 2)


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("ITERTRACK_POOL_SIZE", "lots", "ITERTRACK_POOL_SIZE='lots'"),
        ("ITERTRACK_POOL_SIZE", "0", "ITERTRACK_POOL_SIZE='0'.*from 1 to 100"),
        ("ITERTRACK_MAX_OVERFLOW", "-1", "ITERTRACK_MAX_OVERFLOW='-1'.*connections from 0 to 100"),
    ],
)
def test_a_bad_pool_setting_is_a_typed_error_naming_it(
    pg_store: str, monkeypatch: pytest.MonkeyPatch, setting: str, value: str, expected: str
) -> None:
    with pytest.raises(StoreConfigError, match=expected):
        PerformanceTracker(store=pg_store, migrate=True, env={setting: value})
    monkeypatch.setenv(setting, value)
    with pytest.raises(StoreConfigError, match=expected):
        PerformanceTracker(store=pg_store, migrate=True)


_FORKED = """
import os, sys
from itertrack.adapters.bootstrap import store_of
from itertrack.domain import PerformanceTracker

url = sys.argv[1]
parent = PerformanceTracker(store=url, migrate=True)
iid = parent.start_iteration("agent-1", 1)
pid = os.fork()
if pid == 0:
    code = 1
    try:
        a = PerformanceTracker(store=url)
        b = PerformanceTracker(store=url)
        mine = store_of(a).recorder.datastore
        assert mine is store_of(b).recorder.datastore, "the child's trackers share one pool"
        assert mine is not store_of(parent).recorder.datastore, "the parent's pool is not reused"
        a.update_metrics(iid, {"analysis_tokens": 1})
        a.close()
        b.close()
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, "the child failed"
parent.update_phase(iid, "analysis")  # the parent's pooled connections were not closed by the child
assert parent.get_iteration(iid).version == 3
parent.close()
print("ok")
"""


@pytest.mark.slow
def test_a_forked_child_makes_its_own_pool_and_leaves_the_parents_alone(pg_store: str, tmp_path: Path) -> None:
    script = tmp_path / "forked.py"
    script.write_text(textwrap.dedent(_FORKED))
    url = without_spool(pg_store)
    done = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_read_models_listening_in_every_tracker_leave_the_pool_to_the_changes(
    pg_store: str, open_tracker: Open
) -> None:
    """A tracker's background read models hold a pooled connection (LISTEN) for their life. With one pool per
    process, 12 of them would take every connection of a pool of 10, and every change would wait out the pool
    timeout and spool: the pool grows by one per listener instead, and shrinks when it stops."""
    trackers = [open_tracker(pg_store, migrate=True) for _ in range(12)]
    pool = postgres_pool(datastore_of(trackers[0]))  # type: ignore[arg-type]
    models = [ReadModels(t) for t in trackers]
    try:
        wait_for(lambda: pool.get_stats().get("pool_size", 0) >= 12, 20, "every listener to hold its connection")
        for i, tracker in enumerate(trackers):
            iid = tracker.start_iteration(f"agent-{i}", 1)
            assert models[i].current_phase(iid).id == iid
        assert sum(spooling_writer(t).changes_spooled for t in trackers) == 0
        assert pool.max_size == 10 + 12
    finally:
        for m in models:
            m.close()
    assert pool.max_size == 10
