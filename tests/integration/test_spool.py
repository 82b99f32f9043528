"""Store outage without loss: the spool takes changes while PostgreSQL is unreachable and forwards them, in order."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import psycopg
import pytest
from support import ManualClock, TcpProxy

from itertrack.adapters.bootstrap import spooling_writer, store_of
from itertrack.adapters.spool.sqlite_file import SQLiteSpool
from itertrack.adapters.spool.state import SpoolFlush
from itertrack.adapters.store.postgres import PostgresRecorder
from itertrack.domain import (
    InvalidInputError,
    IterationRecord,
    PerformanceTracker,
    StoreError,
    StoreUnavailableError,
)

Open = Callable[..., PerformanceTracker]
pytestmark = pytest.mark.postgres
ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    port = urlsplit(postgres_url).port or 5432
    p = TcpProxy(port)
    p.start()
    yield p
    p.cut()


def through(store: str, proxy: TcpProxy) -> str:
    """The same store reached through the proxy, with a short connect timeout."""
    parts = urlsplit(store)
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    return parts._replace(netloc=netloc).geturl() + "&connect_timeout=1"


def flush(tracker: PerformanceTracker) -> SpoolFlush:
    """Forward the spool, retrying while the pool replaces connections the outage broke."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return spooling_writer(tracker).flush()
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def versions(tracker: PerformanceTracker, iid: object) -> list[int]:
    return [e.originator_version for e in tracker.history(iid)]  # type: ignore[arg-type]


def test_changes_made_during_an_outage_arrive_in_order(pg_store: str, proxy: TcpProxy, open_tracker: Open) -> None:
    """With the store cut off, calls return promptly, reads say what is spooled, and all of it lands afterwards."""
    host = open_tracker(through(pg_store, proxy), migrate=True)
    iid = host.start_iteration("agent-1", 1)
    host.update_phase(iid, "scan_generation")
    proxy.cut()
    started = time.monotonic()
    host.update_metrics(iid, {"scan_generation_tokens": 100})
    host.update_phase(iid, "backtest_execution")
    host.update_metrics(iid, {"backtest_execution_time_ms": 1520})
    new = host.start_iteration("agent-1", 2)
    host.update_phase(new, "analysis")
    host.save_iteration(IterationRecord(id=iid, agent_id="agent-1", iteration_number=1, strategy={"k": 1}))
    host.update_phase(iid, "completed")
    assert time.monotonic() - started < 4.0  # one connect timeout (1 s) at most, then the spool answers
    with pytest.raises(InvalidInputError):
        host.update_metrics(iid, {"bad": -1})  # the caller's bug is still the caller's, outage or not
    state = host.get_iteration(iid)
    assert (state.phase, state.spooled_changes) == ("completed", 5)
    assert spooling_writer(host).spool is not None
    assert spooling_writer(host).spool.count() == 7

    proxy.start()
    wait_for(
        lambda: spooling_writer(host).spool.count() == 0,
        30,
        "the spool to drain",
    )
    fresh = open_tracker(pg_store, migrate=False)
    assert versions(fresh, iid) == list(range(1, 8))  # start, phase, then the 5 spooled changes
    assert versions(fresh, new) == [1, 2]
    after = fresh.get_iteration(iid)
    assert (after.phase, after.saved, after.spooled_changes) == ("completed", True, 0)
    assert after.metrics == {"scan_generation_tokens": 100, "backtest_execution_time_ms": 1520}
    record = fresh.get_record(iid)
    assert record is not None
    assert record.strategy == {"k": 1}
    assert host.get_iteration(iid).spooled_changes == 0


def test_forwarding_is_idempotent_after_a_crash_mid_forward(pg_store: str, proxy: TcpProxy, open_tracker: Open) -> None:
    """A spooled change the store already holds (forwarded, then the process died) is recognised, not doubled."""
    host = open_tracker(through(pg_store, proxy) + "", migrate=True, env={"ITERTRACK_FORWARD": "n"})
    iid = host.start_iteration("agent-1", 1)
    proxy.cut()
    for n in range(3):
        host.update_metrics(iid, {"analysis_tokens": n + 1})
    assert spooling_writer(host).spool is not None
    first = spooling_writer(host).spool.waiting(1)[0]
    direct = open_tracker(pg_store, migrate=False, env={"ITERTRACK_FORWARD": "n"})
    store_of(direct).recorder.insert_events(list(first.events))  # the forward that committed before the crash
    proxy.start()
    flushed = flush(host)
    assert (flushed.forwarded, flushed.already_stored, flushed.stuck, flushed.waiting) == (2, 1, 0, 0)
    assert versions(direct, iid) == [1, 2, 3, 4]
    assert direct.get_iteration(iid).metrics == {"analysis_tokens": 6}


def test_a_genuine_conflict_is_kept_and_reported(pg_store: str, proxy: TcpProxy, open_tracker: Open) -> None:
    """If another writer took the spooled versions meanwhile, the change stays in the spool as stuck, with a reason."""
    host = open_tracker(through(pg_store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "n"})
    iid = host.start_iteration("agent-1", 1)
    proxy.cut()
    host.update_metrics(iid, {"analysis_tokens": 1})  # spooled as version 2
    host.update_metrics(iid, {"analysis_tokens": 2})  # version 3, behind it
    other = open_tracker(
        pg_store.split("&spool=", maxsplit=1)[0] + "&spool=off", migrate=False
    )  # another process, its own spool
    other.update_phase(iid, "analysis")  # takes version 2 in the store
    proxy.start()
    flushed = flush(host)
    assert (flushed.forwarded, flushed.stuck, flushed.waiting) == (0, 2, 0)
    assert spooling_writer(host).spool is not None
    status = spooling_writer(host).spool.status()
    assert status.stuck == 1
    assert status.waiting == 2
    assert "another writer holds these versions" in (status.entries[0].stuck or "")
    assert versions(other, iid) == [1, 2]  # nothing overwritten, nothing lost: the spool still holds it

    shown = subprocess.run(
        [ITERTRACK, "spool", "status", "--store", pg_store, "--json"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 1, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["waiting"], data["stuck"]) == (2, 1)


def test_a_tracker_started_during_an_outage_spools_from_its_first_change(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """A host (re)started while PostgreSQL is unreachable gets a working tracker; its changes arrive later."""
    open_tracker(pg_store, migrate=True)  # the tables exist; only the network is gone
    proxy.cut()
    started = time.monotonic()
    host = open_tracker(through(pg_store, proxy), migrate=False)
    iid = host.start_iteration("agent-1", 1)
    host.update_phase(iid, "analysis")
    assert time.monotonic() - started < 8.0  # a few connect timeouts (1 s) at most
    assert host.get_iteration(iid).spooled_changes == 2
    proxy.start()
    wait_for(
        lambda: spooling_writer(host).spool.count() == 0,
        30,
        "the spool to drain",
    )
    fresh = open_tracker(pg_store, migrate=False)
    assert versions(fresh, iid) == [1, 2]
    assert fresh.get_iteration(iid).phase == "analysis"


def without_spool(store: str) -> str:
    """The same store for another process: its own spool (none), never the host's."""
    return store.split("&spool=", maxsplit=1)[0] + "&spool=off"


def started_elsewhere(pg_store: str, open_tracker: Open) -> tuple[PerformanceTracker, UUID]:
    """An iteration another process started and moved on; the host under test has never loaded it."""
    other = open_tracker(without_spool(pg_store), migrate=True)
    iid = other.start_iteration("agent-1", 7)
    other.update_phase(iid, "scan_generation")
    return other, iid


def test_an_iteration_this_process_never_loaded_can_be_changed_during_an_outage(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """Its version is unknown, so the changes themselves wait in the spool and are applied, in order, later."""
    other, iid = started_elsewhere(pg_store, open_tracker)
    host = open_tracker(through(pg_store, proxy), migrate=False)
    proxy.cut()
    started = time.monotonic()
    host.update_metrics(iid, {"scan_generation_tokens": 300})
    host.update_phase(iid, "backtest_execution")
    host.save_iteration(IterationRecord(id=iid, agent_id="agent-1", iteration_number=7, analysis={"ok": True}))
    host.update_phase(iid, "completed")
    assert time.monotonic() - started < 4.0  # one connect timeout (1 s) at most, then the spool answers
    assert spooling_writer(host).spool is not None
    status = spooling_writer(host).spool.status()
    assert [e.deferred for e in status.entries] == [
        "metrics scan_generation_tokens",
        "phase backtest_execution",
        "save record (completed)",
        "phase completed",
    ]
    assert [e.with_record for e in status.entries] == [False, False, True, False]
    with pytest.raises(StoreUnavailableError):
        host.get_iteration(iid)  # nothing to answer from: this process never had the iteration

    proxy.start()
    wait_for(
        lambda: spooling_writer(host).spool.count() == 0,
        30,
        "the spool to drain",
    )
    assert versions(other, iid) == [1, 2, 3, 4, 5, 6]
    state = other.get_iteration(iid)
    assert (state.phase, state.saved, state.metrics) == ("completed", True, {"scan_generation_tokens": 300})
    stamps = [e.timestamp for e in other.history(iid)]
    assert stamps == sorted(stamps)
    record = other.get_record(iid)
    assert record is not None
    assert record.analysis == {"ok": True}
    assert host.get_iteration(iid).spooled_changes == 0


def test_a_deferred_change_forwarded_just_before_a_crash_is_not_applied_again(
    pg_store: str, proxy: TcpProxy, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forward committed, the process died before forgetting it: the event id recognises it next time."""
    other, iid = started_elsewhere(pg_store, open_tracker)
    host = open_tracker(through(pg_store, proxy), migrate=False, env={"ITERTRACK_FORWARD": "n"})
    proxy.cut()
    host.update_metrics(iid, {"analysis_tokens": 5})
    host.update_metrics(iid, {"analysis_tokens": 7})
    proxy.start()
    assert spooling_writer(host).spool is not None
    spool = spooling_writer(host).spool
    forget = spool.remove

    def die_after_commit(change_id: int) -> None:
        raise SystemExit("killed between the commit and forgetting the change")

    monkeypatch.setattr(spool, "remove", die_after_commit)
    with pytest.raises(SystemExit):
        flush(host)
    assert versions(other, iid) == [1, 2, 3]  # the first change was committed
    monkeypatch.setattr(spool, "remove", forget)
    flushed = flush(host)
    assert (flushed.forwarded, flushed.already_stored, flushed.stuck, flushed.waiting) == (1, 1, 0, 0)
    assert versions(other, iid) == [1, 2, 3, 4]
    assert other.get_iteration(iid).metrics == {"analysis_tokens": 12}


def test_a_deferred_change_the_stored_iteration_refuses_is_kept_as_stuck(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """If the iteration finished meanwhile, the deferred change is reported with the reason, never dropped."""
    other, iid = started_elsewhere(pg_store, open_tracker)
    host = open_tracker(through(pg_store, proxy), migrate=False, env={"ITERTRACK_FORWARD": "n"})
    proxy.cut()
    host.update_phase(iid, "analysis")
    host.update_metrics(iid, {"analysis_tokens": 9})  # behind it
    other.update_phase(iid, "completed")  # another process finished it
    proxy.start()
    flushed = flush(host)
    assert (flushed.forwarded, flushed.stuck, flushed.waiting) == (0, 2, 0)
    assert spooling_writer(host).spool is not None
    status = spooling_writer(host).spool.status()
    assert (status.waiting, status.stuck) == (2, 1)
    assert "refused by the stored iteration" in (status.entries[0].stuck or "")
    assert "completed" in (status.entries[0].stuck or "")
    assert versions(other, iid) == [1, 2, 3]  # nothing appended after the end

    shown = subprocess.run(
        [ITERTRACK, "spool", "status", "--store", pg_store, "--json"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 1, shown.stderr
    entries = json.loads(shown.stdout)["entries"]
    assert [(e["deferred"], e["versions"]) for e in entries] == [
        ("phase analysis", []),
        ("metrics analysis_tokens", []),
    ]


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


def test_once_the_store_answers_new_work_goes_straight_to_it_while_the_backlog_drains(
    pg_store: str, proxy: TcpProxy, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only iterations with changes still waiting keep spooling (their order); the others are stored at once."""
    host = open_tracker(through(pg_store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "n"})
    iid = host.start_iteration("agent-1", 1)
    proxy.cut()
    host.update_phase(iid, "analysis")
    host.update_metrics(iid, {"analysis_tokens": 4})
    proxy.start()
    assert spooling_writer(host).spool is not None
    spool = spooling_writer(host).spool
    page = spool.waiting
    monkeypatch.setattr(spool, "waiting", lambda limit, after=0: page(1, after) if after == 0 else [])
    assert flush(host).forwarded == 1  # the store answered; one change of the backlog is still waiting
    monkeypatch.setattr(spool, "waiting", page)

    fresh = open_tracker(without_spool(pg_store), migrate=False)  # not sharing (and forwarding) the host's spool
    other = host.start_iteration("agent-1", 2)  # nothing of it waits: stored at once
    host.update_phase(other, "scan_generation")
    assert versions(fresh, other) == [1, 2]
    host.update_phase(iid, "completed")  # behind its waiting change: spooled, in order
    assert spool.count() == 2
    assert versions(fresh, iid) == [1, 2]
    assert flush(host).forwarded == 2
    assert versions(fresh, iid) == [1, 2, 3, 4]
    state = fresh.get_iteration(iid)
    assert (state.phase, state.metrics) == ("completed", {"analysis_tokens": 4})


def test_a_change_behind_one_that_just_got_stuck_is_not_forwarded(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """The saving step spooled after a change another writer made impossible stays behind it (order kept)."""
    host = open_tracker(through(pg_store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "n"})
    iid = host.start_iteration("agent-1", 1)
    proxy.cut()
    host.update_phase(iid, "analysis")  # spooled as version 2
    host.save_iteration(IterationRecord(id=iid, agent_id="agent-1", iteration_number=1))  # version 3, with record
    other = open_tracker(without_spool(pg_store), migrate=False)
    other.update_phase(iid, "completed")  # takes version 2 in the store
    proxy.start()
    flushed = flush(host)
    assert (flushed.forwarded, flushed.stuck, flushed.waiting) == (0, 2, 0)
    assert versions(other, iid) == [1, 2]
    assert other.get_record(iid) is None


def test_during_an_outage_the_callers_bad_input_is_still_refused_at_once(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """Deferring a change never defers the check of its arguments; nothing is spooled for a refused call."""
    _, iid = started_elsewhere(pg_store, open_tracker)
    host = open_tracker(through(pg_store, proxy), migrate=False, env={"ITERTRACK_FORWARD": "n"})
    proxy.cut()
    host.update_phase(iid, "analysis")  # deferred: the iteration is not loaded here
    with pytest.raises(InvalidInputError, match="error"):
        host.update_phase(iid, "failed")  # failed needs its error message
    with pytest.raises(InvalidInputError, match="error"):
        host.update_phase(iid, "analysis", error="only with failed")
    with pytest.raises(InvalidInputError):
        host.update_metrics(iid, {"analysis_tokens": -1})
    assert spooling_writer(host).spool is not None
    assert spooling_writer(host).spool.count() == 1


def test_a_deferred_change_waits_for_its_iteration_to_reach_the_store_then_is_reported(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """Another process's spool may still hold the start: wait (not stuck) for a grace period, then report it."""
    clock = ManualClock()
    host = open_tracker(through(pg_store, proxy), migrate=True, clock=clock, env={"ITERTRACK_FORWARD": "n"})
    proxy.cut()
    unknown = UUID("0d9e8a4c-1b2f-4c3d-9e8f-7a6b5c4d3e2f")
    clock.at(0)
    host.update_phase(unknown, "analysis")
    proxy.start()
    clock.at(60_000)
    flushed = flush(host)
    assert (flushed.forwarded, flushed.stuck, flushed.waiting) == (0, 0, 1)
    clock.at(11 * 60_000)
    flushed = flush(host)
    assert (flushed.forwarded, flushed.stuck, flushed.waiting) == (0, 1, 0)
    assert spooling_writer(host).spool is not None
    assert "is not in the store" in (spooling_writer(host).spool.status().entries[0].stuck or "")


def test_a_closed_tracker_refuses_changes_even_during_an_outage(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """Closing is final: no change is quietly spooled by a tracker the host has closed."""
    _, iid = started_elsewhere(pg_store, open_tracker)
    host = open_tracker(through(pg_store, proxy), migrate=False)
    proxy.cut()
    host.update_phase(iid, "analysis")
    host.close()
    with pytest.raises(StoreError, match="closed"):
        host.update_phase(iid, "backtest_execution")
    spool = SQLiteSpool(urlsplit(pg_store).query.split("spool=", 1)[1].split("&", 1)[0])
    try:
        assert spool.count() == 1
    finally:
        spool.close()


def test_an_unusable_spool_is_a_typed_error(pg_store: str, proxy: TcpProxy, open_tracker: Open, tmp_path: Path) -> None:
    """Store unreachable and the spool file cannot be written: StoreUnavailableError, never sqlite3's own error."""
    host = open_tracker(
        through(without_spool(pg_store), proxy).replace("spool=off", f"spool={tmp_path / 'gone' / 'spool.db'}"),
        migrate=True,
    )
    iid = host.start_iteration("agent-1", 1)
    proxy.cut()
    with pytest.raises(StoreUnavailableError, match="spool"):
        host.update_phase(iid, "analysis")  # the spool's directory does not exist


def _kill_pooled_connections(tracker: PerformanceTracker, postgres_url: str) -> None:
    """The server closes every connection of the tracker's pool, as a restart does."""
    recorder = store_of(tracker).recorder
    assert isinstance(recorder, PostgresRecorder)
    datastore = recorder.datastore
    idle = datastore.pool.get_stats().get("pool_available", 0)
    assert idle >= 2
    with ExitStack() as held:  # every idle connection at once, so each one's backend is known
        pids = [held.enter_context(datastore.get_connection()).info.backend_pid for _ in range(idle)]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        wait_for(
            lambda: (
                admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone() == (0,)
            ),
            10,
            "the backends to end",
        )


def test_connections_a_restart_closed_are_dropped_so_the_next_change_is_stored(
    pg_store: str, postgres_url: str, open_tracker: Open
) -> None:
    """After a failure the forwarder drops dead pooled connections; without that, each would fail a change once."""
    checked = open_tracker(pg_store, migrate=True)
    own_spool = Path(urlsplit(pg_store).query.split("spool=", 1)[1]).with_name("unchecked-spool.db")
    unchecked = open_tracker(without_spool(pg_store).replace("spool=off", f"spool={own_spool}"), migrate=False)
    for tracker in (checked, unchecked):
        iid = tracker.start_iteration("agent-1", 1)
        _kill_pooled_connections(tracker, postgres_url)
        if tracker is checked:
            store_of(tracker).records.drop_broken_connections()
        tracker.update_metrics(iid, {"analysis_tokens": 1})
    assert spooling_writer(checked).changes_spooled == 0  # stored at once on a fresh connection
    assert spooling_writer(unchecked).changes_spooled == 1  # met a dead connection: spooled (and forwarded later)


def test_save_listeners_hear_of_forwarded_changes(pg_store: str, proxy: TcpProxy, open_tracker: Open) -> None:
    """What refreshes on save (read models, a host's hooks) learns of the forwarded changes without another save."""
    host = open_tracker(through(pg_store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "n"})
    heard: list[int] = []
    host.add_save_listener(heard.append)
    iid = host.start_iteration("agent-1", 1)
    proxy.cut()
    host.update_phase(iid, "analysis")
    host.update_metrics(iid, {"analysis_tokens": 2})
    assert len(heard) == 1  # only the start reached the store so far
    proxy.start()
    assert flush(host).forwarded == 2
    assert heard[-1] == store_of(host).recorder.max_notification_id()
    assert heard[-1] > heard[0]


def test_changes_after_a_stuck_one_queue_behind_it_and_never_reach_the_store_first(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """Nothing of that iteration jumps ahead of its stuck change, in this process or a restarted one."""
    host = open_tracker(through(pg_store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "n"})
    iid = host.start_iteration("agent-1", 1)
    proxy.cut()
    host.update_metrics(iid, {"analysis_tokens": 1})  # spooled as version 2
    other = open_tracker(without_spool(pg_store), migrate=False)
    other.update_phase(iid, "analysis")  # takes version 2 in the store
    proxy.start()
    assert flush(host).stuck == 1
    host.update_phase(iid, "completed")  # must wait behind the stuck change, not be stored as version 3
    assert versions(other, iid) == [1, 2]
    assert host.get_iteration(iid).spooled_changes == 2
    host.close()
    restarted = open_tracker(through(pg_store, proxy), migrate=False, env={"ITERTRACK_FORWARD": "n"})
    restarted.update_metrics(iid, {"analysis_tokens": 5})
    assert versions(other, iid) == [1, 2]
    assert spooling_writer(restarted).spool is not None
    assert spooling_writer(restarted).spool.count(iid) == 3
    assert flush(restarted).forwarded == 0
    assert versions(other, iid) == [1, 2]  # still nothing: a person decides (spool retry or discard)


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
