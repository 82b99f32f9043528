"""Group commit: changes that threads of one tracker make while a commit is in flight share the next transaction.

Every test makes the group certain instead of likely: the first change's insert is held until every other
thread's change waits behind it (counted by the group committer), so the next transaction carries them all.
Transactions are counted at the recorder's insert, the one call per transaction.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID, uuid4

import pytest
from spool_support import flush, through, versions, without_spool
from support import TcpProxy, wait_for

from itertrack.adapters.bootstrap import spooling_writer, store_of
from itertrack.adapters.store.unavailable import CommitOutcomeUnknown
from itertrack.domain import (
    ConcurrencyError,
    IterationRecord,
    OutcomeUnknownError,
    PerformanceTracker,
)

Open = Callable[..., PerformanceTracker]
THREADS = 16
JOIN_TIMEOUT_S = 120.0  # a loaded machine is slow; the waits are on conditions
TRACKER_LOCK_STRIPES = 64  # the tracker's per-iteration locks are striped by id: its _LOCK_STRIPES


def distinct_lock_ids(count: int = THREADS) -> list[UUID]:
    """Iteration ids on distinct tracker lock stripes, so no thread waits on another's iteration lock (the
    test needs every change queued at the store, not at the tracker)."""
    taken: dict[int, UUID] = {}
    while len(taken) < count:
        candidate = uuid4()
        taken.setdefault(candidate.int % TRACKER_LOCK_STRIPES, candidate)
    return list(taken.values())


def started(tracker: PerformanceTracker, count: int = THREADS) -> list[UUID]:
    """`count` iterations started, on distinct lock stripes."""
    return [tracker.start_iteration("agent-1", n, iteration_id=iid) for n, iid in enumerate(distinct_lock_ids(count))]


class HeldInserts:
    """The tracker's recorder insert, counted; the first call waits until `release()`; `on_call(n)` runs before
    call n reaches the store (a fault to inject), `after_call(n)` after it returned."""

    def __init__(self, tracker: PerformanceTracker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store = store_of(tracker)
        self.calls = 0
        self.sizes: list[int] = []  # events per transaction
        self.held = threading.Event()
        self.released = threading.Event()
        self.before: dict[int, Callable[[], None]] = {}
        self.after: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()
        original = self.store.recorder.insert_events

        def insert(stored_events: Sequence[Any], **kwargs: Any) -> Any:
            with self._lock:
                self.calls += 1
                n = self.calls
                self.sizes.append(len(stored_events))
            if n == 1:
                self.held.set()
                assert self.released.wait(JOIN_TIMEOUT_S), "the held insert was never released"
            if n in self.before:
                self.before[n]()
            ids = original(stored_events, **kwargs)
            if n in self.after:
                self.after[n]()
            return ids

        monkeypatch.setattr(self.store.recorder, "insert_events", insert)

    def waiting(self) -> int:
        return self.store.group.waiting()

    def release(self) -> None:
        self.released.set()


def run_held_group(
    inserts: HeldInserts, work: Callable[[int], None], threads: int = THREADS
) -> dict[int, BaseException]:
    """Thread 0's change is held in its commit while threads 1.. queue behind it; then it is let go.

    Returns each thread's error (none if it succeeded).
    """
    errors: dict[int, BaseException] = {}

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as e:  # reported to the test, not lost in the thread
            errors[n] = e

    first = threading.Thread(target=run, args=(0,))
    first.start()
    wait_for(inserts.held.is_set, JOIN_TIMEOUT_S, "the first change's commit to be in flight")
    others = [threading.Thread(target=run, args=(n,)) for n in range(1, threads)]
    for t in others:
        t.start()
    wait_for(lambda: inserts.waiting() == threads - 1, JOIN_TIMEOUT_S, "every other change to queue behind it")
    inserts.release()
    for t in [first, *others]:
        t.join(JOIN_TIMEOUT_S)
    assert not any(t.is_alive() for t in [first, *others]), "a thread was still running"
    return errors


class SavesByThread:
    """The notification id each thread's change was acknowledged with (save listeners run in the caller's thread)."""

    def __init__(self, tracker: PerformanceTracker) -> None:
        self.by_thread: dict[int, list[int]] = {}
        tracker.add_save_listener(self.saved)

    def saved(self, notification_id: int) -> None:
        self.by_thread.setdefault(threading.get_ident(), []).append(notification_id)


def notification_ids(tracker: PerformanceTracker) -> dict[UUID, list[int]]:
    """Each iteration's notification ids, in its version order."""
    found: dict[UUID, list[int]] = {}
    for n in store_of(tracker).recorder.select_notifications(start=0, limit=10**9):
        found.setdefault(UUID(str(n.originator_id)), []).append(n.id)
    return found


def test_changes_from_many_threads_share_one_transaction(durable_store: str, open_tracker: Open) -> None:
    """16 threads each change their own iteration while a commit is in flight: the 15 queued changes go in one
    transaction (2 in all, not 16), each lands once, and each caller is acknowledged with its own event's id."""
    tracker = open_tracker(durable_store)
    ids = started(tracker)
    with pytest.MonkeyPatch.context() as mp:
        inserts = HeldInserts(tracker, mp)
        saves = SavesByThread(tracker)
        acknowledged: dict[int, tuple[UUID, list[int]]] = {}

        def work(n: int) -> None:
            tracker.update_metrics(ids[n], {"grouped": n + 1})
            acknowledged[n] = (ids[n], saves.by_thread[threading.get_ident()])

        errors = run_held_group(inserts, work)
    assert errors == {}
    assert inserts.calls == 2
    assert inserts.sizes == [1, THREADS - 1]
    stored = notification_ids(tracker)
    for n, iid in enumerate(ids):
        assert versions(tracker, iid) == [1, 2]
        assert tracker.get_iteration(iid).metrics == {"grouped": n + 1}
        owner, acks = acknowledged[n]
        assert acks == [stored[owner][-1]]  # its own event's notification id, not the group's last


def test_a_group_holds_at_most_the_configured_number_of_changes(durable_store: str, open_tracker: Open) -> None:
    """With ITERTRACK_GROUP_COMMIT_CHANGES=4, the 15 queued changes go in groups of 4, 4, 4 and 3, in queue order."""
    tracker = open_tracker(durable_store, env={"ITERTRACK_GROUP_COMMIT_CHANGES": "4"})
    ids = started(tracker)
    with pytest.MonkeyPatch.context() as mp:
        inserts = HeldInserts(tracker, mp)
        errors = run_held_group(inserts, lambda n: tracker.update_metrics(ids[n], {"grouped": 1}))
    assert errors == {}
    assert inserts.sizes == [1, 4, 4, 4, 3]
    for iid in ids:
        assert tracker.get_iteration(iid).metrics == {"grouped": 1}


def test_a_taken_version_in_a_group_fails_only_that_change_which_is_reapplied(
    durable_store: str, open_tracker: Open
) -> None:
    """One queued change's version was taken by another tracker: the group's transaction fails, each change is
    committed alone once (the 15 others land then), and only the stale one is re-applied, ending correct."""
    tracker = open_tracker(durable_store)
    other = open_tracker(durable_store, migrate=False)
    ids = started(tracker)
    stale = ids[5]
    other.update_metrics(stale, {"grouped": 100})  # this tracker's copy of it is now behind
    with pytest.MonkeyPatch.context() as mp:
        inserts = HeldInserts(tracker, mp)
        errors = run_held_group(inserts, lambda n: tracker.update_metrics(ids[n], {"grouped": n + 1}))
    assert errors == {}
    # The held one, the failed group, each of its 15 changes alone, the stale change re-applied.
    assert inserts.calls == 1 + 1 + (THREADS - 1) + 1
    assert inserts.sizes[1] == THREADS - 1
    assert tracker.conflicts_retried == 1
    for n, iid in enumerate(ids):
        if iid == stale:
            assert versions(tracker, iid) == [1, 2, 3]
            assert tracker.get_iteration(iid).metrics == {"grouped": 100 + n + 1}
        else:
            assert versions(tracker, iid) == [1, 2]
            assert tracker.get_iteration(iid).metrics == {"grouped": n + 1}


def test_a_refused_record_in_a_group_fails_only_its_caller(durable_store: str, open_tracker: Open) -> None:
    """A saving step whose record row is already there (written by hand) is refused; the changes grouped with
    it land, and only its caller gets the error (as it would alone: its key conflict never goes away)."""
    tracker = open_tracker(durable_store, max_attempts=2)
    ids = started(tracker)
    refused = 7
    squatter = IterationRecord(id=ids[refused], agent_id="agent-1", iteration_number=refused)
    squatter = squatter.model_copy(update={"created_at": tracker.clock.now()})
    store_of(tracker).recorder.insert_events([], iteration_record=squatter)  # a record row and no event

    def work(n: int) -> None:
        if n == refused:
            tracker.save_iteration(IterationRecord(id=ids[n], agent_id="agent-1", iteration_number=n, strategy={}))
        else:
            tracker.update_metrics(ids[n], {"grouped": 1})

    with pytest.MonkeyPatch.context() as mp:
        inserts = HeldInserts(tracker, mp)
        errors = run_held_group(inserts, work)
    assert list(errors) == [refused]
    assert isinstance(errors[refused], ConcurrencyError)
    assert inserts.sizes[1] == THREADS - 1
    for n, iid in enumerate(ids):
        state = tracker.get_iteration(iid)
        if n == refused:
            assert (state.version, state.saved) == (1, False)
        else:
            assert (state.version, state.metrics) == (2, {"grouped": 1})


def _spin(stop: Any) -> None:
    """A busy CPU loop until `stop` is set (load for the machine while a test runs)."""
    while not stop.is_set():
        for _ in range(10_000):
            pass


@contextmanager
def busy_cpus(count: int = 2) -> Iterator[None]:
    """`count` processes spinning on the CPU while the block runs."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    spinners = [context.Process(target=_spin, args=(stop,), daemon=True) for _ in range(count)]
    for p in spinners:
        p.start()
    try:
        yield
    finally:
        stop.set()
        for p in spinners:
            p.join(30)
            if p.is_alive():
                p.kill()


def test_group_commit_under_load_stays_correct(durable_store: str, open_tracker: Open) -> None:
    """With 2 busy CPU loops: 16 threads x 20 changes land exactly once, each acknowledged with its own event's
    id, and a held commit still gathers every queued change into one transaction."""
    tracker = open_tracker(durable_store)
    ids = started(tracker)
    times = 20
    saves = SavesByThread(tracker)
    acknowledged: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT_S)

    def work(n: int) -> None:
        try:
            start.wait()
            for _ in range(times):
                tracker.update_metrics(ids[n], {"loaded": 1})
            acknowledged[n] = saves.by_thread.pop(threading.get_ident())
        except BaseException as e:  # reported below
            errors.append(e)

    with busy_cpus():
        threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(JOIN_TIMEOUT_S)
        assert not any(t.is_alive() for t in threads)
        with pytest.MonkeyPatch.context() as mp:
            inserts = HeldInserts(tracker, mp)
            held_errors = run_held_group(inserts, lambda n: tracker.update_metrics(ids[n], {"loaded": 1}))
    assert errors == []
    assert held_errors == {}
    assert inserts.calls == 2
    stored = notification_ids(tracker)
    for iid in ids:
        assert tracker.get_iteration(iid).metrics == {"loaded": times + 1}
        assert versions(tracker, iid) == list(range(1, times + 3))
    for n, iid in enumerate(ids):
        assert len(acknowledged[n]) == times
        assert set(acknowledged[n]) <= set(stored[iid])  # each acknowledged with its own event's id


def test_an_unknown_outcome_of_a_group_goes_to_every_caller_in_it(durable_store: str, open_tracker: Open) -> None:
    """The group's commit lands but its acknowledgement is lost: each of its callers gets `OutcomeUnknownError`,
    and retrying with the same change_id applies each change exactly once."""
    tracker = open_tracker(without_spool(durable_store) if durable_store.startswith("postgresql") else durable_store)
    ids = started(tracker)

    def lose_the_ack() -> None:
        raise CommitOutcomeUnknown("connection lost after COMMIT was sent (injected)")

    with pytest.MonkeyPatch.context() as mp:
        inserts = HeldInserts(tracker, mp)
        inserts.after[2] = lose_the_ack
        errors = run_held_group(
            inserts, lambda n: tracker.update_metrics(ids[n], {"grouped": 1}, change_id=f"change-{n}")
        )
    assert sorted(errors) == list(range(1, THREADS))
    assert all(isinstance(e, OutcomeUnknownError) for e in errors.values())
    for n, iid in enumerate(ids):
        tracker.update_metrics(iid, {"grouped": 1}, change_id=f"change-{n}")  # the host's retry
        assert versions(tracker, iid) == [1, 2]
        assert tracker.get_iteration(iid).metrics == {"grouped": 1}


@pytest.mark.postgres
def test_an_outage_during_a_group_spools_each_change_once(pg_store: str, proxy: TcpProxy, open_tracker: Open) -> None:
    """The store goes away as the group's commit starts: every change of the group is spooled (none lost, the
    calls return), and once the store is back each lands exactly once."""
    host = open_tracker(through(pg_store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "n"})
    ids = started(host)
    with pytest.MonkeyPatch.context() as mp:
        inserts = HeldInserts(host, mp)
        inserts.before[2] = proxy.cut
        errors = run_held_group(inserts, lambda n: host.update_metrics(ids[n], {"grouped": 1}))
    assert errors == {}
    assert inserts.sizes[1] == THREADS - 1
    assert spooling_writer(host).spool.count() == THREADS - 1
    proxy.start()
    flushed = flush(host)
    assert flushed.waiting == 0
    fresh = open_tracker(without_spool(pg_store), migrate=False)
    for iid in ids:
        assert versions(fresh, iid) == [1, 2]
        assert fresh.get_iteration(iid).metrics == {"grouped": 1}
    assert sum(len(n) for n in notification_ids(fresh).values()) == 2 * THREADS  # nothing doubled
