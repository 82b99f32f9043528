"""The spool's scenarios on a store the test switches off and on: fast, no server, no network.

The PostgreSQL versions of these (through a TCP proxy that cuts connections) are in test_spool.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from fake_clock import FakeClock
from support import wait_for
from switchable_store import SwitchableStore, spooling_tracker

from itertrack.adapters.spool.writer import SpoolingWriter
from itertrack.domain import IterationFinishedError, PerformanceTracker, Status, StoreUnavailableError
from itertrack.domain.model.changes import DeferredChange, MetricsChange

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
        rows = select(originator_id, *args, **kwargs)
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


def test_processes_sharing_a_spool_file_forward_it_one_at_a_time(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker], tmp_path: Path
) -> None:
    """Two forwarders on one change could land it twice (one sends its events, one applies it again): while
    one forwards the file, another's pass sends nothing and says so; afterwards it goes on."""
    first = spooling_tracker(store, tmp_path / "shared.db", FakeClock(seed=1))
    second = spooling_tracker(store, tmp_path / "shared.db", FakeClock(seed=2))
    try:
        iid = first.start_iteration("agent-1", 1)
        store.recorder.up = False
        first.update_metrics(iid, {"analysis_tokens": 1})
        store.recorder.up = True
        with writer(first).spool.forwarding() as held:
            assert held
            flushed = writer(second).flush()
            assert (flushed.forwarded_elsewhere, flushed.forwarded, flushed.waiting) == (True, 0, 1)
        flushed = writer(second).flush()
        assert (flushed.forwarded_elsewhere, flushed.forwarded, flushed.waiting) == (False, 1, 0)
        assert first.get_iteration(iid).metrics == {"analysis_tokens": 1}
    finally:
        first.close()
        second.close()


def test_a_change_written_before_the_retry_lock_failed_to_release_is_not_kept_again(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Releasing the per-iteration retry lock needs the store: if that fails after the change was written
    (here: spooled), the change is done; keeping it again as well would store it twice."""
    host, other = opened("host"), opened("other")
    iid = host.start_iteration("agent-1", 1)
    host.update_metrics(iid, {"hammered": 1})
    other.update_metrics(iid, {"hammered": 1})  # the host's copy is now behind: its next change loses a race
    event_store = host.ports.store
    append = event_store.append  # type: ignore[attr-defined]
    calls: list[int] = []

    def append_then_cut(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            return append(*args, **kwargs)  # the lost race
        raise StoreUnavailableError("cut between the retry's load and its append")

    @contextmanager
    def lock_lost_on_release(iteration_id: object) -> Iterator[None]:
        yield
        raise StoreUnavailableError("the retry lock's connection is gone")

    monkeypatch.setattr(event_store, "append", append_then_cut)
    monkeypatch.setattr(event_store, "serialised", lock_lost_on_release)
    host.update_metrics(iid, {"hammered": 1})
    assert len(calls) == 2
    assert writer(host).spool.count() == 1  # spooled once, as events; not also kept as a change
    monkeypatch.undo()
    assert writer(host).flush().forwarded == 1
    assert other.get_iteration(iid).metrics == {"hammered": 3}


def test_one_change_kept_twice_in_the_spool_is_applied_once(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker]
) -> None:
    """A change whose events and whose deferred copy both wait (same event id) lands once, in one pass."""
    host = opened("host")
    iid = host.start_iteration("agent-1", 1)
    host.update_metrics(iid, {"hammered": 1})
    other = opened("other")
    other.update_metrics(iid, {"hammered": 1})  # takes version 3: the spooled events must be applied again
    change = MetricsChange(event_id=uuid4(), metrics={"hammered": 1})
    copy = host.ports.store.load(iid)  # version 2, the host's copy
    base = copy.last_event_id
    change.apply(copy, datetime.now(UTC))
    spool = writer(host).spool
    stored = host.ports.store.stored(copy.take_events())  # type: ignore[attr-defined]
    spool.add(iid, stored, None, DeferredChange(at=datetime.now(UTC), change=change), base)
    spool.add_deferred(iid, DeferredChange(at=datetime.now(UTC), change=change), None)
    host.ports.store.evict(iid)
    flushed = writer(host).flush()
    assert (flushed.forwarded, flushed.already_stored, flushed.waiting) == (1, 1, 0)
    assert other.get_iteration(iid).metrics == {"hammered": 3}


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker], caplog: pytest.LogCaptureFixture
) -> None:
    """A host making hundreds of changes in an outage gets two warnings, not one per change."""
    host = opened("host")
    loaded, unloaded = host.start_iteration("agent-1", 1), opened("other").start_iteration("agent-1", 2)
    caplog.set_level(logging.DEBUG, logger="itertrack")
    store.recorder.up = False
    for _ in range(20):
        host.update_metrics(loaded, {"hammered": 1})  # spooled as events
        host.update_metrics(unloaded, {"hammered": 1})  # kept as changes
    store.recorder.up = True
    assert writer(host).flush().forwarded == 40
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("store unavailable; keeping changes in the spool until it answers")
    assert warnings[1] == "store answers again; forwarding the changes kept meanwhile"


def test_a_host_change_racing_a_set_aside_is_never_written_on_the_refused_copy(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's copy holds a spooled change the stored iteration refuses: a host change made while the
    forwarder sets it aside must not be written on that copy (here: onto an iteration another writer finished)."""
    host, other = opened("host"), opened("other")
    iid = host.start_iteration("agent-1", 1)
    store.recorder.up = False
    host.update_metrics(iid, {"analysis_tokens": 1})  # version 2 on the host's copy, spooled
    store.recorder.up = True
    other.update_phase(iid, "completed")  # version 2 in the store: the spooled change is refused
    writer(host).state.store_up = True  # as after the forwarder's probe: the host's new work goes straight on
    spool = writer(host).spool
    mark_stuck = spool.mark_stuck
    raced: list[Exception | None] = []

    def set_aside_then_host_changes(change_id: int, reason: str) -> None:
        mark_stuck(change_id, reason)
        try:  # the host's next call, between the set-aside and anything after it
            host.update_phase(iid, "analysis")
            raced.append(None)
        except Exception as e:
            raced.append(e)

    monkeypatch.setattr(spool, "mark_stuck", set_aside_then_host_changes)
    flushed = writer(host).flush()
    assert flushed.set_aside == 1
    assert len(raced) == 1
    assert isinstance(raced[0], IterationFinishedError)  # told, as online: the stored iteration is finished
    stored = other.get_iteration(iid)
    assert (stored.phase, stored.metrics) == ("completed", {}), versions(other, iid)


def test_a_change_made_on_the_stored_iteration_after_a_duplicate_start_was_set_aside_lands(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a duplicate start is set aside the host works on the stored iteration: a change it then makes
    (spooled, its version next to the duplicate's last) is not taken for one made on the duplicate."""
    other, host = opened("other"), opened("host")
    iid = other.start_iteration("agent-1", 7)
    other.update_phase(iid, "scan_generation")  # stored: versions 1, 2
    store.recorder.up = False
    assert host.start_iteration("agent-2", 3, iteration_id=iid) == iid  # cannot be known here yet
    host.update_metrics(iid, {"analysis_tokens": 5})  # made on the duplicate: version 2
    spool = writer(host).spool
    mark_stuck = spool.mark_stuck
    set_aside: list[int] = []

    def set_aside_then_host_changes(change_id: int, reason: str) -> None:
        mark_stuck(change_id, reason)
        set_aside.append(change_id)
        if len(set_aside) == 2:  # the host no longer holds the duplicate: it reads the stored one (version 2)
            writer(host).state.store_up = True
            assert host.get_iteration(iid).agent_id == "agent-1"
            writer(host).state.store_up = False  # cut again: its next change is spooled as version 3
            host.update_phase(iid, "analysis")

    store.recorder.up = True
    monkeypatch.setattr(spool, "mark_stuck", set_aside_then_host_changes)
    flushed = writer(host).flush()
    assert (flushed.forwarded, flushed.set_aside, flushed.stuck, flushed.waiting) == (1, 2, 2, 0)
    stored = other.get_iteration(iid)
    assert (stored.agent_id, stored.phase, stored.metrics) == ("agent-1", "analysis", {})


def test_a_change_made_on_a_duplicate_start_and_forwarded_in_a_later_pass_is_set_aside_with_it(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change the host made on its duplicate while the forwarder was setting the duplicate aside, and
    that a later pass forwards (this one was cut short), is set aside too, not applied on the stored one."""
    other, host = opened("other"), opened("host")
    iid = other.start_iteration("agent-1", 7)
    store.recorder.up = False
    host.start_iteration("agent-2", 3, iteration_id=iid)
    host.update_metrics(iid, {"analysis_tokens": 5})  # made on the duplicate
    forwarder = writer(host).forwarder
    forget = forwarder.forgotten

    def host_changes_then_store_blips(iteration_id: UUID) -> None:
        host.update_metrics(iid, {"analysis_tokens": 2})  # on the duplicate still: spooled behind the others
        forget(iteration_id)
        forwarder.closing.set()  # this pass ends here (as at close, or an outage before the next page)

    store.recorder.up = True
    monkeypatch.setattr(forwarder, "forgotten", host_changes_then_store_blips)
    assert writer(host).flush().set_aside == 2
    monkeypatch.undo()
    forwarder.closing.clear()
    flushed = writer(host).flush()
    assert (flushed.forwarded, flushed.set_aside, flushed.stuck, flushed.waiting) == (0, 1, 3, 0)
    assert other.get_iteration(iid).metrics == {}


def test_a_spool_that_cannot_be_forwarded_does_not_cut_the_host_off_a_store_that_answers(
    store: SwitchableStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forwarder cannot take its lock on the spool (its folder read-only, the file system full): that is
    the spool's failure, not the store's. The host's other iterations keep going straight to the store, and
    are stored, instead of all joining a spool that cannot drain."""

    class UnwritableLock:
        def __init__(self, path: str, **kwargs: object) -> None:
            self.path = path

        def acquire(self) -> None:
            raise PermissionError(13, "Permission denied", self.path)

    host = spooling_tracker(store, tmp_path / "spool.db", FakeClock(), forward=True)
    try:
        waits, goes_on = host.start_iteration("agent-1", 1), host.start_iteration("agent-1", 2)
        monkeypatch.setattr("itertrack.adapters.spool.sqlite_file.FileLock", UnwritableLock)
        store.recorder.up = False
        host.update_metrics(waits, {"analysis_tokens": 1})  # spooled; the forwarder starts and cannot forward
        store.recorder.up = True
        wait_for(lambda: writer(host).forwarder.failures >= 3, 30, "the forwarder to fail a few passes")
        host.update_metrics(goes_on, {"analysis_tokens": 2})
        assert versions(host, goes_on) == [1, 2]
        assert writer(host).spool.count() == 1  # the waiting change stays, in order, for when the spool can drain
    finally:
        host.close()


def said_of_forwarding(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in list(caplog.records) if "spool forwarding" in r.getMessage()]


def test_a_forward_refused_again_and_again_is_one_warning_and_its_recovery_is_said(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker], caplog: pytest.LogCaptureFixture
) -> None:
    """The forwarder retries a refusal that is not an outage (a privilege the role lacks) with back-off: one
    warning with the traceback for the whole run of failures, not one per retry; once the store takes the
    change, one line says it recovered and the change lands."""
    caplog.set_level(logging.DEBUG, logger="itertrack")
    host = opened("host", forward=True)
    iid = host.start_iteration("agent-1", 1)
    store.recorder.up = False
    host.update_metrics(iid, {"analysis_tokens": 3})  # spooled: the store is off
    store.recorder.refusing = RuntimeError("permission denied for table stored_events")
    store.recorder.up = True
    writer(host).forwarder.start()

    def levels() -> list[str]:
        return [r.levelname for r in said_of_forwarding(caplog)]

    wait_for(lambda: levels().count("DEBUG") >= 3, 30, "three refusals after the first")
    store.recorder.refusing = None
    wait_for(lambda: "INFO" in levels(), 30, "the recovery to be said")
    assert host.get_iteration(iid).spooled_changes == 0
    assert versions(host, iid) == [1, 2]
    records = said_of_forwarding(caplog)
    warnings = [r for r in records if r.levelname == "WARNING"]
    assert len(warnings) == 1, levels()
    assert "permission denied" in warnings[0].getMessage()
    assert warnings[0].exc_info is not None
    infos = [r.getMessage() for r in records if r.levelname == "INFO"]
    assert len(infos) == 1, infos
    assert "recovered after" in infos[0]


def test_a_store_that_refuses_the_forwarders_probe_is_not_said_to_have_recovered(
    store: SwitchableStore, opened: Callable[..., PerformanceTracker], caplog: pytest.LogCaptureFixture
) -> None:
    """Started offline with nothing to forward, the forwarder asks the store after each (empty) pass; a probe
    refused for a reason that is not an outage is one warning for every retry, and no pass claims recovery."""
    caplog.set_level(logging.DEBUG, logger="itertrack")
    store.recorder.refusing_records = RuntimeError("permission denied for table iteration_records")
    host = opened("host", forward=True, started_offline=True)
    forwarder = writer(host).forwarder
    forwarder.start()
    wait_for(lambda: forwarder.failures >= 4, 30, "four refused probes")
    levels = [r.levelname for r in said_of_forwarding(caplog)]
    assert levels.count("WARNING") == 1, levels
    assert "INFO" not in levels
    store.recorder.refusing_records = None
