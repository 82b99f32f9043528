"""Connections under faults: an exhausted pool, connections a restart closed, migrate with the store away, a
pool of one."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from spool_support import (
    Open,
    kill_pooled_connections,
    through,
    versions,
    without_spool,
)
from support import TcpProxy, wait_for

from itertrack.adapters.bootstrap import spooling_writer, store_of
from itertrack.adapters.store.postgres import PostgresRecorder
from itertrack.domain import (
    StoreUnavailableError,
)

pytestmark = pytest.mark.postgres


def test_an_exhausted_connection_pool_spools_instead_of_blocking_the_host(pg_store: str, open_tracker: Open) -> None:
    """Every connection busy: the call waits one pool timeout (connect_timeout) at most, then spools."""
    host = open_tracker(pg_store + "&pool_size=1&max_overflow=0&connect_timeout=1", migrate=True)
    iid = host.start_iteration("agent-1", 1)
    recorder = store_of(host).recorder
    assert isinstance(recorder, PostgresRecorder)
    with recorder.datastore.get_connection():  # e.g. a long report query holds the only connection
        started = time.monotonic()
        host.update_metrics(iid, {"analysis_tokens": 3})
        host.update_phase(iid, "analysis")
        assert time.monotonic() - started < 3.0
        assert host.get_iteration(iid).spooled_changes == 2
    wait_for(
        lambda: spooling_writer(host).spool.count() == 0,
        30,
        "the spool to drain",
    )
    fresh = open_tracker(pg_store, migrate=False)
    assert versions(fresh, iid) == [1, 2, 3]
    assert fresh.get_iteration(iid).metrics == {"analysis_tokens": 3}


def test_connections_a_restart_closed_are_dropped_so_the_next_change_is_stored(
    pg_store: str, postgres_url: str, open_tracker: Open
) -> None:
    """After a failure the forwarder drops dead pooled connections; without that, each would fail a change once."""
    checked = open_tracker(pg_store, migrate=True)
    own_spool = Path(urlsplit(pg_store).query.split("spool=", 1)[1]).with_name("unchecked-spool.db")
    unchecked = open_tracker(without_spool(pg_store).replace("spool=off", f"spool={own_spool}"), migrate=False)
    for tracker in (checked, unchecked):
        iid = tracker.start_iteration("agent-1", 1)
        kill_pooled_connections(tracker, postgres_url)
        if tracker is checked:
            store_of(tracker).records.drop_broken_connections()
        tracker.update_metrics(iid, {"analysis_tokens": 1})
    assert spooling_writer(checked).changes_spooled == 0  # stored at once on a fresh connection
    assert spooling_writer(unchecked).changes_spooled == 1  # met a dead connection: spooled (and forwarded later)


def test_migrate_with_the_store_away_is_a_typed_error(pg_store: str, proxy: TcpProxy, open_tracker: Open) -> None:
    host = open_tracker(through(pg_store, proxy), migrate=True)
    proxy.cut()
    with pytest.raises(StoreUnavailableError):
        host.migrate()


def test_with_a_pool_of_one_a_lost_race_is_retried_not_taken_for_an_outage(pg_store: str, open_tracker: Open) -> None:
    """The retry's lock must not hold the only connection the retry itself needs."""
    host = open_tracker(pg_store + "&pool_size=1&max_overflow=0&connect_timeout=1", migrate=True)
    iid = host.start_iteration("agent-1", 1)  # cached here at version 1
    other = open_tracker(without_spool(pg_store), migrate=False)
    other.update_phase(iid, "analysis")  # version 2, behind the host's back
    host.update_metrics(iid, {"analysis_tokens": 4})  # meets version 2: re-loads and retries
    assert (host.conflicts_retried, spooling_writer(host).changes_deferred, spooling_writer(host).changes_spooled) == (
        1,
        0,
        0,
    )
    assert versions(other, iid) == [1, 2, 3]
