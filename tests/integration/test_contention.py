"""Contention on one iteration: a change that lost a race queues on the store's per-iteration lock, and so
do this process's next changes of that iteration for a while; uncontended changes never take the lock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from uuid import UUID

import pytest
from fake_clock import FakeClock

from itertrack.adapters.bootstrap import store_of
from itertrack.domain import OutcomeUnknownError, PerformanceTracker, StoreUnavailableError
from itertrack.domain.service.contention import CONTENTION_WINDOW_S

Open = Callable[..., PerformanceTracker]


def count_lock_entries(tracker: PerformanceTracker, monkeypatch: pytest.MonkeyPatch) -> list[UUID]:
    """The iteration ids the tracker's store lock was taken for, in order (the real lock is still taken)."""
    store = store_of(tracker)
    real = store.serialised
    taken: list[UUID] = []

    @contextmanager
    def counted(iteration_id: UUID) -> Iterator[None]:
        taken.append(iteration_id)
        with real(iteration_id):
            yield

    def serialised(iteration_id: UUID) -> AbstractContextManager[None]:
        return counted(iteration_id)

    monkeypatch.setattr(store, "serialised", serialised)
    return taken


def test_after_a_lost_race_changes_queue_on_the_lock_then_go_lock_free_again(
    durable_store: str, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trackers (two hosts) on one iteration: the host that lost a race takes the lock from its next
    changes' first attempts, catches up on the other host's events under it and so loses no more races;
    once nobody else wrote for the window, its changes go without the lock again."""
    host_a = open_tracker(durable_store)
    clock = FakeClock()
    host_b = open_tracker(durable_store, clock=clock)
    iid = host_a.start_iteration("agent-1", 1)
    other = host_a.start_iteration("agent-1", 2)
    locked = count_lock_entries(host_b, monkeypatch)

    host_b.update_metrics(other, {"calls": 1})  # nobody else writes `other`: no lock
    host_b.update_metrics(iid, {"calls": 1})  # b caches iid at version 2
    assert locked == []
    host_a.update_metrics(iid, {"calls": 1})  # a takes version 3
    host_b.update_metrics(iid, {"calls": 1})  # b's copy is stale: loses once, retries under the lock
    assert (host_b.conflicts_retried, locked) == (1, [iid])

    host_a.update_metrics(iid, {"calls": 1})  # a writes again: b's copy is stale again
    host_b.update_metrics(iid, {"calls": 1})  # under the lock from its first attempt, caught up: no lost race
    assert (host_b.conflicts_retried, locked) == (1, [iid, iid])
    host_b.update_metrics(other, {"calls": 1})  # the window is per iteration
    assert locked == [iid, iid]

    # The catch-up found a's event, which renewed the window: just before it ends, still queued.
    clock.advance(CONTENTION_WINDOW_S * 1000 - 1)
    host_b.update_metrics(iid, {"calls": 1})
    assert locked == [iid, iid, iid]
    # That change found nobody else's events: the window was not renewed, and once it ends no lock.
    clock.advance(2)
    host_b.update_metrics(iid, {"calls": 1})
    assert (host_b.conflicts_retried, locked) == (1, [iid, iid, iid])

    assert host_a.get_iteration(iid).metrics == {"calls": 7}
    assert host_b.get_iteration(iid).metrics == {"calls": 7}


@pytest.mark.postgres
def test_a_write_waits_for_the_iterations_lock_holder_no_longer_than_the_lock_timeout(
    pg_store: str, open_tracker: Open
) -> None:
    """While another process holds the iteration's lock (a change that lost a race), a write waits for it,
    bounded by the store's `lock_timeout`; then it fails as certainly not stored (not an unknown outcome)."""
    holder = open_tracker(pg_store)
    writer = open_tracker(pg_store.split("&spool=", maxsplit=1)[0] + "&spool=off&lock_timeout=1")
    iid = holder.start_iteration("agent-1", 1)
    writer.get_iteration(iid)
    with store_of(holder).serialised(iid):
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as raised:
            writer.update_metrics(iid, {"calls": 1})
        waited = time.monotonic() - started
    assert not isinstance(raised.value, OutcomeUnknownError)
    assert "lock timeout" in str(raised.value)
    assert waited >= 1.0
    writer.update_metrics(iid, {"calls": 1})  # the lock released: the write goes through
    assert [e.originator_version for e in writer.history(iid)] == [1, 2]
