"""Connections under faults: an exhausted pool, connections a restart closed, migrate with the store away, a
pool of one."""

from __future__ import annotations

import time

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


@pytest.mark.parametrize("spool", ["own", "off"])
@pytest.mark.parametrize("call", ["write", "read"])
def test_connections_the_server_closed_are_replaced_and_the_call_retried_once(
    pg_store: str, postgres_url: str, open_tracker: Open, spool: str, call: str
) -> None:
    """After a restart or failover (the server closed every pooled connection), the next write or read is
    retried once on a fresh connection and succeeds: nothing raised, nothing spooled (issue 11, item 5)."""
    tracker = open_tracker(pg_store if spool == "own" else without_spool(pg_store), migrate=True)
    iid = tracker.start_iteration("agent-1", 1)
    other = open_tracker(without_spool(pg_store), migrate=False)
    other.update_phase(iid, "analysis")  # version 2, so a read must fetch what this tracker lacks
    kill_pooled_connections(tracker, postgres_url)
    if call == "write":
        tracker.update_metrics(iid, {"analysis_tokens": 1})  # meets version 2: re-loads and stores version 3
        assert versions(other, iid) == [1, 2, 3]
    else:
        assert tracker.get_iteration(iid).phase == "analysis"
    if spool == "own":
        assert spooling_writer(tracker).changes_spooled == 0


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
