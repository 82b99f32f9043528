"""Store outage without loss, on PostgreSQL behind a TCP proxy: changes made while it is unreachable wait in the
spool and are forwarded in order, once."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from documents_support import payload
from spool_support import (
    ITERTRACK,
    Open,
    flush,
    started_elsewhere,
    through,
    versions,
    without_spool,
)
from support import TcpProxy, wait_for

from itertrack.adapters.bootstrap import spooling_writer, store_of
from itertrack.adapters.spool.sqlite_file import SQLiteSpool
from itertrack.domain import (
    InvalidInputError,
    IterationRecord,
    StoreError,
    StoreUnavailableError,
)

pytestmark = pytest.mark.postgres


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


def test_spooled_changes_whose_versions_another_writer_took_are_applied_again(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """If another writer took the spooled versions meanwhile, the changes land after its events (issue 11, item 1)."""
    host = open_tracker(through(pg_store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "n"})
    iid = host.start_iteration("agent-1", 1)
    proxy.cut()
    host.update_metrics(iid, {"analysis_tokens": 1})  # spooled as version 2
    host.update_metrics(iid, {"analysis_tokens": 2})  # version 3, behind it
    other = open_tracker(without_spool(pg_store), migrate=False)  # another process, its own spool
    other.update_phase(iid, "analysis")  # takes version 2 in the store
    proxy.start()
    flushed = flush(host)
    assert (flushed.forwarded, flushed.set_aside, flushed.stuck, flushed.waiting) == (2, 0, 0, 0)
    assert versions(other, iid) == [1, 2, 3, 4]
    state = other.get_iteration(iid)
    assert (state.phase, state.metrics) == ("analysis", {"analysis_tokens": 3})
    assert host.get_iteration(iid).metrics == {"analysis_tokens": 3}  # the host's copy was refreshed

    shown = subprocess.run(
        [ITERTRACK, "spool", "status", "--store", pg_store, "--json"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    data = payload(shown.stdout, "spool.status")
    assert (data["waiting"], data["stuck"]) == (0, 0)


def test_a_change_the_stored_iteration_refuses_is_set_aside_and_holds_nothing_up(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """Two hosts save one iteration: the second save is reported with its reason; the changes after it land."""
    host = open_tracker(through(pg_store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "n"})
    iid = host.start_iteration("agent-1", 1)
    proxy.cut()
    host.save_iteration(IterationRecord(id=iid, agent_id="agent-1", iteration_number=1))  # version 2, with record
    host.update_metrics(iid, {"analysis_tokens": 4})  # version 3, behind it
    other = open_tracker(without_spool(pg_store), migrate=False)
    other.save_iteration(IterationRecord(id=iid, agent_id="agent-1", iteration_number=1, iteration_status="failed"))
    proxy.start()
    flushed = flush(host)
    assert (flushed.forwarded, flushed.set_aside, flushed.stuck, flushed.waiting) == (1, 1, 1, 0)
    assert versions(other, iid) == [1, 2, 3]
    assert other.get_iteration(iid).metrics == {"analysis_tokens": 4}
    record = other.get_record(iid)
    assert record is not None
    assert record.iteration_status == "failed"  # the first save's record stands
    assert spooling_writer(host).spool is not None
    status = spooling_writer(host).spool.status()
    assert (status.waiting, status.stuck) == (0, 1)
    assert "refused by the stored iteration" in (status.entries[0].stuck or "")
    assert "already" in (status.entries[0].stuck or "")

    host.update_phase(iid, "completed")  # nothing waits for this iteration: straight to the store
    assert versions(other, iid) == [1, 2, 3, 4]
    host.close()
    restarted = open_tracker(through(pg_store, proxy), migrate=False, env={"ITERTRACK_FORWARD": "n"})
    assert restarted.get_iteration(iid).phase == "completed"
    assert spooling_writer(restarted).spool is not None
    assert (spooling_writer(restarted).spool.count(), spooling_writer(restarted).spool.stuck_count()) == (0, 1)


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
    monkeypatch.setattr(spool, "waiting", lambda limit, after=0, **kw: page(1, after, **kw) if after == 0 else [])
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


def test_events_made_on_a_state_the_store_does_not_hold_are_checked_again_not_sent_as_they_are(
    pg_store: str, proxy: TcpProxy, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spooled `completed` follows the stored version, but was made on the host's refused save, not on the
    stored `failed`: it is applied again (and refused) instead of landing after the end (one change per page)."""
    host = open_tracker(through(pg_store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "n"})
    iid = host.start_iteration("agent-1", 1)
    proxy.cut()
    host.save_iteration(IterationRecord(id=iid, agent_id="agent-1", iteration_number=1))  # version 2
    host.update_phase(iid, "completed")  # version 3, made on the host's version 2
    other = open_tracker(without_spool(pg_store), migrate=False)
    other.update_phase(iid, "failed", error="scanner crashed")  # the stored version 2
    proxy.start()
    assert spooling_writer(host).spool is not None
    spool = spooling_writer(host).spool
    page = spool.waiting
    monkeypatch.setattr(spool, "waiting", lambda limit, after=0, **kw: page(1, after, **kw))
    flushed = flush(host)
    assert (flushed.forwarded, flushed.set_aside, flushed.stuck, flushed.waiting) == (0, 2, 2, 0)
    assert versions(other, iid) == [1, 2]
    assert other.get_iteration(iid).phase == "failed"
