"""Starts made while PostgreSQL is unreachable under an id that is taken (issue 11, item 2): refused at once when
this process can know it, otherwise reported when forwarded, and nothing genuine waits behind them."""

from __future__ import annotations

import pytest
from spool_support import Open, flush, started_elsewhere, through, versions
from support import TcpProxy

from itertrack.adapters.bootstrap import spooling_writer
from itertrack.domain import DuplicateIterationError

pytestmark = pytest.mark.postgres


def test_an_offline_start_under_an_id_this_process_holds_is_refused_and_its_copy_kept(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    host = open_tracker(through(pg_store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "n"})
    iid = host.start_iteration("agent-1", 1)
    host.update_phase(iid, "analysis")
    proxy.cut()
    with pytest.raises(DuplicateIterationError, match=str(iid)):
        host.start_iteration("agent-2", 9, iteration_id=iid)
    state = host.get_iteration(iid)
    assert (state.agent_id, state.iteration_number, state.phase) == ("agent-1", 1, "analysis")
    assert spooling_writer(host).spool.count() == 0  # nothing kept for the refused start


def test_an_offline_start_under_an_id_waiting_in_the_spool_is_refused(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    open_tracker(pg_store, migrate=True).close()
    host = open_tracker(through(pg_store, proxy), migrate=False, env={"ITERTRACK_FORWARD": "n"})
    proxy.cut()
    iid = host.start_iteration("agent-1", 1)
    host.update_phase(iid, "analysis")
    host.close()  # a restarted host has no copy; the spool still holds the start
    restarted = open_tracker(through(pg_store, proxy), migrate=False, env={"ITERTRACK_FORWARD": "n"})
    with pytest.raises(DuplicateIterationError, match=str(iid)):
        restarted.start_iteration("agent-1", 1, iteration_id=iid)
    assert spooling_writer(restarted).spool.count() == 2


def test_a_duplicate_start_found_when_forwarded_is_reported_and_holds_nothing_up(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """The start and the changes made on it are set aside with the reason; the stored iteration goes on."""
    other, iid = started_elsewhere(pg_store, open_tracker)  # agent-1, iteration 7, phase scan_generation
    host = open_tracker(through(pg_store, proxy), migrate=False, env={"ITERTRACK_FORWARD": "n"})
    proxy.cut()
    assert host.start_iteration("agent-2", 3, iteration_id=iid) == iid  # this process cannot know yet
    host.update_metrics(iid, {"analysis_tokens": 5})  # made on the duplicate
    other.update_phase(iid, "analysis")
    proxy.start()

    flushed = flush(host)
    assert (flushed.forwarded, flushed.set_aside, flushed.stuck, flushed.waiting) == (0, 2, 2, 0)
    stored = other.get_iteration(iid)
    assert (stored.agent_id, stored.iteration_number, stored.metrics) == ("agent-1", 7, {})
    assert versions(other, iid) == [1, 2, 3]
    entries = spooling_writer(host).spool.status().entries
    assert "duplicate start" in (entries[0].stuck or "")
    assert "'agent-1'" in (entries[0].stuck or "")
    assert f"made on duplicate start #{entries[0].id}" in (entries[1].stuck or "")

    host.update_phase(iid, "backtest_execution")  # the stored iteration's next change goes straight to it
    assert versions(other, iid) == [1, 2, 3, 4]
    assert host.get_iteration(iid).agent_id == "agent-1"
