"""Every store call is bounded: statement and lock timeouts on every pooled connection, one connect at an offline start.

No test here measures time: a call blocked by a lock is waited for far longer (30 s) than the lock timeout
set (1 s) while the lock is still held, and connection attempts are counted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql
from spool_support import flush, started_elsewhere, versions, without_spool
from support import wait_for

from itertrack.adapters.bootstrap import spooling_writer, store_of
from itertrack.adapters.store.postgres import PostgresRecorder
from itertrack.domain import PerformanceTracker, StoreUnavailableError

pytestmark = pytest.mark.postgres
Open = Callable[..., PerformanceTracker]
HELD_FOR_AT_MOST_S = 30.0  # how long the test holds a lock waiting for the call (the lock timeout set is 1 s)


@contextlib.contextmanager
def events_table_locked(postgres_url: str, tracker: PerformanceTracker) -> Iterator[None]:
    """Another session holds ACCESS EXCLUSIVE on the tracker's events table (as VACUUM FULL or ALTER TABLE do)."""
    recorder = store_of(tracker).recorder
    assert isinstance(recorder, PostgresRecorder)
    table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)
    with psycopg.connect(postgres_url) as locker:  # a transaction, held until the block ends
        locker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        yield
        locker.rollback()


def outcome_while_held(call: Callable[[], Any]) -> BaseException | None:
    """Run `call` in a thread and wait for it; its exception, or None. Fails if it is still blocked after the wait."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:  # handed to the test
            result.append(e)
        else:
            result.append(None)

    threading.Thread(target=run, daemon=True).start()
    wait_for(lambda: bool(result), HELD_FOR_AT_MOST_S, "the call to return while another session holds the lock")
    return result[0]


def test_a_table_lock_held_elsewhere_bounds_a_change_which_is_spooled_and_lands_later(
    pg_store: str, postgres_url: str, open_tracker: Open
) -> None:
    """Before: update_phase waited for the lock's whole hold (19.5 s behind a VACUUM FULL). Now the read gives up
    after lock_timeout, the change waits in the spool, and lands once the lock is gone."""
    _, iid = started_elsewhere(pg_store, open_tracker)  # this host must read the iteration: it has no copy
    host = open_tracker(pg_store + "&lock_timeout=1", migrate=False)
    with events_table_locked(postgres_url, host):
        assert outcome_while_held(lambda: host.update_phase(iid, "analysis")) is None
        assert spooling_writer(host).spool.count(iid) == 1  # kept, while the lock is still held
    flush(host)
    wait_for(lambda: host.get_iteration(iid).phase == "analysis", 30, "the spooled change to land")
    assert versions(host, iid) == [1, 2, 3]


def test_without_a_spool_a_lock_held_elsewhere_is_a_typed_unavailable_error(
    pg_store: str, postgres_url: str, open_tracker: Open
) -> None:
    """spool=off: the bounded call raises StoreUnavailableError naming the lock timeout; nothing was written."""
    _, iid = started_elsewhere(pg_store, open_tracker)
    host = open_tracker(without_spool(pg_store) + "&lock_timeout=1", migrate=False)
    with events_table_locked(postgres_url, host):
        error = outcome_while_held(lambda: host.update_phase(iid, "analysis"))
    assert isinstance(error, StoreUnavailableError), error
    assert "lock timeout" in str(error)
    assert versions(host, iid) == [1, 2]


def session_settings(tracker: PerformanceTracker) -> tuple[str, str]:
    """statement_timeout and lock_timeout of a pooled connection, as the server shows them."""
    recorder = store_of(tracker).recorder
    assert isinstance(recorder, PostgresRecorder)
    with recorder.datastore.get_connection() as conn:
        statement = conn.execute("SHOW statement_timeout").fetchone()
        lock = conn.execute("SHOW lock_timeout").fetchone()
    assert statement is not None
    assert lock is not None
    return statement["statement_timeout"], lock["lock_timeout"]


def test_every_pooled_connection_carries_the_statement_and_lock_timeouts(pg_store: str, open_tracker: Open) -> None:
    """Defaults 10 s and 5 s (README); the ITERTRACK_* settings change them; a URL option wins over its setting."""
    assert session_settings(open_tracker(pg_store)) == ("10s", "5s")
    env = {"ITERTRACK_STATEMENT_TIMEOUT": "7", "ITERTRACK_LOCK_TIMEOUT": "9"}
    assert session_settings(open_tracker(pg_store, env=env)) == ("7s", "9s")
    assert session_settings(open_tracker(pg_store + "&lock_timeout=3&statement_timeout=4", env=env)) == ("4s", "3s")


def test_a_statement_running_past_the_statement_timeout_is_an_outage(pg_store: str, open_tracker: Open) -> None:
    """The server cancels it (SQLSTATE 57014): the store call raises StoreUnavailableError, as for any outage."""
    tracker = open_tracker(pg_store + "&statement_timeout=1")
    records = store_of(tracker).records
    assert isinstance(records, PostgresRecorder)
    slow = records.select_record_statement
    records.select_record_statement = sql.SQL("SELECT r.* FROM pg_sleep(30), ({}) AS r").format(slow)
    with pytest.raises(StoreUnavailableError, match="statement timeout"):
        tracker.get_record(tracker.start_iteration("agent-1", 1))


class SilentServer:
    """Accepts TCP connections and never answers, as a frozen server or a black-holed network does."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.server.accept()[0])

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


@pytest.fixture(params=["nothing listening", "a server that never answers"])
def down_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port where PostgreSQL does not answer: refused at once, or silent until the connect timeout."""
    if request.param == "nothing listening":
        probe = socket.create_server(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        yield port
        return
    silent = SilentServer()
    yield silent.port
    silent.close()


def test_an_offline_start_connects_once_and_its_first_changes_wait_on_nothing(
    pg_store: str, down_port: int, connect_attempts: list[str]
) -> None:
    """Before: the constructor waited for the pool three times (~6 s) and a change right after a forwarding pass
    waited once more. Now the constructor makes one connection attempt (bounded by connect_timeout), and the
    first changes are spooled without another, while the forwarder (here run by hand) has found the spool empty."""
    parts = urlsplit(pg_store)
    store = parts._replace(netloc=f"{parts.username}@127.0.0.1:{down_port}").geturl() + "&connect_timeout=1"
    connect_attempts.clear()
    with PerformanceTracker(store=store, env={"ITERTRACK_FORWARD": "n"}) as tracker:
        assert len(connect_attempts) == 1, connect_attempts
        writer = spooling_writer(tracker)
        assert writer.flush().waiting == 0  # a forwarding pass over the empty spool, as the forwarder's first
        tracker.update_phase(uuid.uuid4(), "analysis")  # an iteration this host never loaded: kept as a change
        iid = tracker.start_iteration("agent-1", 1)
        tracker.update_phase(iid, "scan_generation")
        assert len(connect_attempts) == 1, connect_attempts
        assert writer.spool.count() == 3
