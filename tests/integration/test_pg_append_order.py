"""The PostgreSQL append (adapters/store/postgres_append.py): notification ids in commit order, one round trip.

A follower reads `notification_id > position` and moves its position to the last id it saw. If a writer takes
id n, another takes n+1 and commits first, the follower sees n+1, moves past n, and never sees n when it
commits. The library's own server-side insert function (`POSTGRES_ENABLE_DB_FUNCTIONS`) takes no table lock and
lets that happen: the first test reproduces it, deterministically (two connections, explicit transactions).
Ours takes the library's table lock before it takes ids, so the second writer waits for the first to commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from psycopg import sql
from psycopg.pq import Trace
from spool_support import without_spool
from support import wait_for

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.store.postgres import PostgresRecorder
from itertrack.domain import PerformanceTracker, StoreNotMigratedError

pytestmark = pytest.mark.postgres
Open = Callable[..., PerformanceTracker]


def recorder_of(tracker: PerformanceTracker) -> PostgresRecorder:
    recorder = store_of(tracker).recorder
    assert isinstance(recorder, PostgresRecorder)
    return recorder


def an_event(version: int = 1) -> StoredEvent:
    return StoredEvent(originator_id=uuid4(), originator_version=version, topic="tests:Event", state=b"{}")


def follow(recorder: PostgresRecorder, position: int) -> list[int]:
    """What a follower at `position` reads next: the library's select of the notifications after it."""
    return [n.id for n in recorder.select_notifications(position, 100, inclusive_of_start=False)]


def library_insert(conn: psycopg.Connection[Any], recorder: PostgresRecorder, event: StoredEvent) -> int:
    """One event through the library's own insert function (`POSTGRES_ENABLE_DB_FUNCTIONS`); its notification id."""
    schema = sql.Identifier(recorder.datastore.schema)
    statement = sql.SQL(
        "SELECT * FROM {schema}.{function}(ARRAY[ROW(%s, %s, %s, %s)::{schema}.{type}])",
    ).format(
        schema=schema,
        function=sql.Identifier(recorder.pg_function_name_insert_events),
        type=sql.Identifier(recorder.stored_event_type_name),
    )
    row = conn.execute(statement, (event.originator_id, event.originator_version, event.topic, event.state)).fetchone()
    assert row is not None
    return int(row[0])


def our_insert(conn: psycopg.Connection[Any], recorder: PostgresRecorder, event: StoredEvent) -> int:
    """One event through our append function, as the recorder calls it; its notification id."""
    params = recorder.append.one_params(event)
    rows = conn.execute(recorder.append.call_one_statement, params, prepare=True, binary=True).fetchall()
    return int(rows[0][0])


def connect(postgres_url: str, *, autocommit: bool) -> psycopg.Connection[Any]:
    return psycopg.connect(postgres_url, autocommit=autocommit)


def test_the_library_function_lets_a_follower_pass_over_an_id_that_commits_late(
    pg_store: str, postgres_url: str, open_tracker: Open
) -> None:
    """The documented reproduction: A takes id n (not committed), B takes n+1 and commits, the follower reads n+1
    and moves past n; when A commits, n lies behind the follower's position and it never reads it."""
    recorder = recorder_of(open_tracker(without_spool(pg_store), migrate=True))
    position = recorder.max_notification_id() or 0
    with connect(postgres_url, autocommit=False) as a, connect(postgres_url, autocommit=True) as b:
        late = library_insert(a, recorder, an_event())  # A's transaction stays open
        early = library_insert(b, recorder, an_event())  # B commits at once: nothing made it wait for A
        assert early > late
        seen = follow(recorder, position)
        assert seen == [early]
        position = seen[-1]
        a.commit()
    assert follow(recorder, position) == []  # A's event is behind the follower: skipped for good
    assert late in follow(recorder, 0)  # yet it is stored


def test_our_append_makes_a_second_writer_wait_so_no_follower_passes_over_an_id(
    pg_store: str, postgres_url: str, open_tracker: Open
) -> None:
    """The same scenario through our function: B, calling it as the recorder does, waits on A's table lock
    before it takes an id, so the follower meets A's id before B's, and both."""
    recorder = recorder_of(open_tracker(without_spool(pg_store), migrate=True))
    position = recorder.max_notification_id() or 0
    table = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
    outcome: list[Any] = []

    def second_writer() -> None:
        try:
            outcome.append(recorder.insert_events([an_event()]))
        except BaseException as e:  # handed to the test
            outcome.append(e)

    with connect(postgres_url, autocommit=False) as a, connect(postgres_url, autocommit=True) as watcher:
        first = our_insert(a, recorder, an_event())  # A holds the lock in its open transaction
        b = threading.Thread(target=second_writer, daemon=True)
        b.start()
        waiting = "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted"

        def b_waits_on_the_lock() -> bool:
            row = watcher.execute(waiting, (table,)).fetchone()
            return row is not None and row[0] == 1

        wait_for(b_waits_on_the_lock, 30, "the second writer to wait on the events table's lock")
        assert follow(recorder, position) == []  # nothing committed yet, and B has taken no id
        a.commit()
        b.join(30)
    assert len(outcome) == 1, "the second writer did not finish"
    assert isinstance(outcome[0], list), outcome
    (second,) = outcome[0]
    assert first < second
    assert follow(recorder, position) == [first, second]


def frontend_messages(trace: str) -> list[str]:
    """The message types the client sent, from a libpq trace (`F <length> <type> ...` lines)."""
    return [line.split("\t")[2].split(" ")[0] for line in trace.splitlines() if line.startswith("F\t")]


def test_a_tracked_change_is_one_prepared_round_trip(pg_store: str, open_tracker: Open, tmp_path: Path) -> None:
    """update_metrics on a cached iteration sends Bind, Describe, Execute and one Sync (no SQL text, no BEGIN or
    COMMIT) and waits for one ReadyForQuery: one round trip, on the connection that prepared the call."""
    tracker = open_tracker(without_spool(pg_store) + "&pool_size=1&max_overflow=0", migrate=True)
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_metrics(iid, {"analysis_tokens": 1})  # the call is prepared on the pool's one connection
    with recorder_of(tracker).datastore.get_connection() as conn:
        pgconn = conn.pgconn
    path = tmp_path / "libpq.trace"
    with path.open("w") as traced:
        pgconn.trace(traced.fileno())
        pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
        try:
            tracker.update_metrics(iid, {"analysis_tokens": 2})
        finally:
            pgconn.untrace()
    trace = path.read_text()
    assert frontend_messages(trace) == ["Bind", "Describe", "Execute", "Sync"], trace
    assert trace.count("\tReadyForQuery\t") == 1, trace
    assert tracker.get_iteration(iid).metrics["analysis_tokens"] == 3


def drop_append_function(postgres_url: str, recorder: PostgresRecorder) -> None:
    """The store as an older release left it: its tables, without our append function (either form)."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for signature in recorder.append.signatures:
            conn.execute(f'DROP FUNCTION "{recorder.datastore.schema}".{signature}')


def test_a_store_without_the_append_function_is_not_migrated_until_itertrack_migrate(
    pg_store: str, postgres_url: str, open_tracker: Open
) -> None:
    """Opening a tracker on a store an older release migrated raises StoreNotMigratedError naming the function
    and `itertrack migrate`; a tracker that finds it missing when writing raises the same, nothing written;
    migrating creates it and writes go on."""
    store = without_spool(pg_store)
    running = open_tracker(store, migrate=True)
    iid = running.start_iteration("agent-1", 1)
    recorder = recorder_of(running)
    drop_append_function(postgres_url, recorder)
    with pytest.raises(StoreNotMigratedError, match=rf"function {recorder.append.name}.*itertrack migrate"):
        open_tracker(store, migrate=False)
    with pytest.raises(StoreNotMigratedError, match="itertrack migrate"):
        running.update_metrics(iid, {"analysis_tokens": 1})
    assert running.history(iid)[-1].originator_version == 1
    open_tracker(store, migrate=True)  # `itertrack migrate` does the same
    fresh = open_tracker(store, migrate=False)
    fresh.update_metrics(iid, {"analysis_tokens": 1})
    assert [e.originator_version for e in fresh.history(iid)] == [1, 2]


def test_records_keep_their_values_through_the_function(pg_store: str, open_tracker: Open) -> None:
    """A saved record's JSON columns (strings, nested values, absent ones) and text come back as given."""
    tracker = open_tracker(without_spool(pg_store), migrate=True)
    iid = tracker.start_iteration("agent-1", 1)
    given = {
        "id": iid,
        "agent_id": "agent-1",
        "iteration_number": 1,
        "strategy": "just a string",
        "scan_results": {"rows": [1, 2.5, None, "x'\"; DROP TABLE x; --"], "empty": {}},
        "backtest_results": [],
        "analysis": None,
        "manual_guidance": "ünïcode \\ and 'quotes'",
        "iteration_status": "completed",
    }
    tracker.save_iteration(given)
    record = tracker.get_record(iid)
    assert record is not None
    for key, value in given.items():
        assert getattr(record, key) == value, key
    assert isinstance(record.id, UUID)
