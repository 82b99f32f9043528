"""The spool's scenarios on a store the test switches off and on: fast, no server, no network.

The PostgreSQL versions of these (through a TCP proxy that cuts connections) are in test_spool.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_clock import FakeClock
from support import wait_for
from switchable_store import SwitchableStore, spooling_tracker

from itertrack.adapters.spool.writer import SpoolingWriter
from itertrack.domain import PerformanceTracker, Status, StoreUnavailableError

Open = Callable[..., PerformanceTracker]


@pytest.fixture
def store() -> SwitchableStore:
    return SwitchableStore()


@pytest.fixture
def opened(store: SwitchableStore, tmp_path: Path) -> Iterator[Callable[..., PerformanceTracker]]:
    """Opens spooling trackers on the shared switchable store (a spool file each), closing them at the end."""
    trackers: list[PerformanceTracker] = []

    def open_one(name: str, *, forward: bool = False, started_offline: bool = False) -> PerformanceTracker:
        tracker = spooling_tracker(
            store,
            tmp_path / f"{name}.db",
            FakeClock(seed=len(trackers) + 1),
            forward=forward,
            started_offline=started_offline,
        )
        trackers.append(tracker)
        return tracker

    yield open_one
    for tracker in trackers:
        tracker.close()


def writer(tracker: PerformanceTracker) -> SpoolingWriter:
    w = tracker.ports.writer
    assert isinstance(w, SpoolingWriter)
    return w


def versions(tracker: PerformanceTracker, iteration_id: object) -> list[int]:
    return [e.originator_version for e in tracker.history(str(iteration_id))]


def test_changes_made_while_the_store_is_off_wait_in_order_and_land_once_it_answers(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker]
) -> None:
    """Calls return while the store is off; the spool holds them; a flush lands them in order, once."""
    host = opened("host")
    iid = host.start_iteration("agent-1", 1)
    store.recorder.up = False
    host.update_phase(iid, "scan_generation")
    host.update_metrics(iid, {"scan_generation_tokens": 10})
    host.update_metrics(iid, {"scan_generation_tokens": 5})
    assert host.get_iteration(iid).spooled_changes == 3
    assert host.get_iteration(iid).metrics["scan_generation_tokens"] == 15  # this process's copy
    store.recorder.up = True
    flushed = writer(host).flush()
    assert (flushed.forwarded, flushed.stuck, flushed.waiting) == (3, 0, 0)
    assert versions(host, iid) == [1, 2, 3, 4]
    again = writer(host).flush()
    assert (again.forwarded, again.already_stored) == (0, 0)
    fresh = opened("fresh")
    assert fresh.get_iteration(iid).metrics["scan_generation_tokens"] == 15


def test_a_change_of_an_iteration_never_loaded_here_waits_as_a_change_and_is_applied_on_the_stored_one(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker]
) -> None:
    """Its version is unknown during the outage; once the store answers it lands after what others stored."""
    host, other = opened("host"), opened("other")
    iid = host.start_iteration("agent-1", 1)
    store.recorder.up = False
    other.update_phase(iid, "analysis")  # other never loaded iid: kept as the change itself
    status = writer(other).spool.status()
    assert [e.deferred for e in status.entries] == ["phase analysis"]
    with pytest.raises(StoreUnavailableError):
        other.get_iteration(iid)  # not loaded here, and the store is away
    store.recorder.up = True
    host.update_metrics(iid, {"analysis_tokens": 7})  # version 2, while other's change waits
    flushed = writer(other).flush()
    assert flushed.forwarded == 1
    assert versions(host, iid) == [1, 2, 3]
    state = host.get_iteration(iid)
    assert (state.phase, state.metrics["analysis_tokens"]) == ("analysis", 7)


def test_a_change_the_stored_iteration_refuses_is_stuck_with_its_reason_and_blocks_nothing_else(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker]
) -> None:
    """An iteration finished meanwhile refuses a waiting change: it is kept stuck; another iteration's lands."""
    host, other = opened("host"), opened("other")
    finished, open_one = host.start_iteration("agent-1", 1), host.start_iteration("agent-1", 2)
    store.recorder.up = False
    other.update_phase(finished, "analysis")
    other.update_phase(open_one, "analysis")
    store.recorder.up = True
    host.update_phase(finished, "completed")
    flushed = writer(other).flush()
    assert (flushed.forwarded, flushed.stuck, flushed.waiting) == (1, 1, 0)
    (stuck,) = [e for e in writer(other).spool.status().entries if e.stuck]
    assert stuck.iteration_id == finished
    assert "refused by the stored iteration" in (stuck.stuck or "")
    assert host.get_iteration(open_one).phase == "analysis"
    assert host.get_iteration(finished).status == Status.COMPLETED


def test_a_forward_that_committed_before_a_crash_is_recognised_and_not_applied_twice(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker]
) -> None:
    """The store already holds the spooled rows (a forward whose acknowledgement was lost): removed as 'already'."""
    host = opened("host")
    iid = host.start_iteration("agent-1", 1)
    store.recorder.up = False
    host.update_metrics(iid, {"analysis_tokens": 3})
    store.recorder.up = True
    (waiting,) = writer(host).spool.waiting(10)
    store.recorder.insert_events(list(waiting.events))  # the forward that committed before the crash
    flushed = writer(host).flush()
    assert (flushed.forwarded, flushed.already_stored) == (0, 1)
    assert versions(host, iid) == [1, 2]


def test_a_tracker_started_while_the_store_is_off_spools_from_its_first_change(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker]
) -> None:
    """Started offline: start_iteration returns an id at once; the forwarder lands it when the store answers."""
    store.recorder.up = False
    host = opened("host", started_offline=True, forward=True)
    iid = host.start_iteration("agent-1", 1)
    host.update_phase(iid, "scan_generation")
    assert writer(host).spool.count() == 2
    store.recorder.up = True
    wait_for(lambda: writer(host).spool.count() == 0, 30, "the forwarder to drain the spool")
    assert versions(opened("fresh"), iid) == [1, 2]


def test_a_host_whose_spool_cannot_be_written_recovers_when_the_store_is_back(
    store: SwitchableStore, tmp_path: Path
) -> None:
    """Spool on an unusable file system and a store blip: that change fails typed, the store is probed again
    whatever the spool did, and once it answers the host's changes are stored (no restart needed)."""
    unusable = tmp_path / "no-such-folder" / "spool.db"  # sqlite cannot create it: as a full or read-only mount
    host = spooling_tracker(store, unusable, FakeClock(), forward=True)
    try:
        iid = host.start_iteration("agent-1", 1)
        store.recorder.up = False
        with pytest.raises(StoreUnavailableError, match="spool"):
            host.update_metrics(iid, {"analysis_tokens": 1})  # neither stored nor kept: not acknowledged
        store.recorder.up = True
        wait_for(writer(host).store_answers, 30, "the forwarder to find the store answering again")
        host.update_metrics(iid, {"analysis_tokens": 2})
        assert versions(host, iid) == [1, 2]
        assert host.get_iteration(iid).metrics["analysis_tokens"] == 2
    finally:
        host.close()


def test_an_iterations_waiting_changes_are_forwarded_on_one_read_of_its_history(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forwarding cost does not grow with the iteration (issue 11, item 8): the forwarder reads a long
    iteration's whole history once, then only what came after its copy, however many changes wait."""
    other = opened("other")
    iid = other.start_iteration("agent-1", 1)
    for _ in range(300):
        other.update_metrics(iid, {"analysis_tokens": 1})
    host = opened("host")  # never loaded it: while the store is off, its changes wait as changes
    store.recorder.up = False
    for _ in range(40):
        host.update_metrics(iid, {"analysis_tokens": 2})
    store.recorder.up = True
    whole_reads: list[int] = []
    select = store.recorder.select_events

    def counted(originator_id: object, *args: object, **kwargs: object) -> object:
        rows = select(originator_id, *args, **kwargs)  # type: ignore[arg-type]
        if kwargs.get("gt") is None and not kwargs.get("desc"):
            whole_reads.append(len(rows))
        return rows

    monkeypatch.setattr(store.recorder, "select_events", counted)
    flushed = writer(host).flush()
    assert (flushed.forwarded, flushed.waiting) == (40, 0)
    assert whole_reads == [301]  # one replay of the stored history for all 40 changes
    store.recorder.up = False
    for _ in range(10):
        host.update_metrics(iid, {"analysis_tokens": 2})
    store.recorder.up = True
    assert writer(host).flush().forwarded == 10
    assert whole_reads == [301]  # the next pass reads only the events after its copy
    assert other.get_iteration(iid).metrics == {"analysis_tokens": 300 + 50 * 2}
