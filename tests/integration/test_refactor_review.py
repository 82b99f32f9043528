"""Behaviour the tracker had before the refactor (issue 10) and must keep: found by reviewing old against new."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.persistence import OperationalError
from fake_clock import FakeClock
from switchable_store import NoPause, SwitchableRecorder, SwitchableStore, spooling_tracker

from itertrack.adapters.spool.writer import SpoolingWriter
from itertrack.domain import PerformanceTracker
from itertrack.domain.service.store_ports import RetryPause


class LockingRecorder(SwitchableRecorder):
    """The switchable recorder whose per-iteration retry lock also needs the store (as PostgreSQL's does)."""

    def __init__(self) -> None:
        super().__init__()
        self.unlock_fails = False

    @contextmanager
    def serialised(self, iteration_id: UUID) -> Iterator[None]:
        self._answer()
        yield
        if self.unlock_fails:
            raise OperationalError("connection lost while releasing the retry lock")


class LockingStore(SwitchableStore):
    """A switchable store with the locking recorder."""

    def __init__(self) -> None:
        super().__init__()
        self.locking = LockingRecorder()
        self.recorder = self.locking


class PauseThen(RetryPause):
    """Runs `action` at the first pause between retries (the moment the store goes away, in these tests)."""

    def __init__(self, action: str, recorder: LockingRecorder) -> None:
        self.action = action
        self.recorder = recorder

    def pause(self, attempt: int) -> None:
        if self.action == "off":
            self.recorder.up = False
        else:
            self.recorder.unlock_fails = True


def spooling(store: LockingStore, spool: Path, retry: RetryPause, seed: int) -> PerformanceTracker:
    """A tracker on `store` writing through a spool file, forwarding by hand."""
    return spooling_tracker(store, spool, FakeClock(seed=seed), retry=retry)


def spool_of(tracker: PerformanceTracker) -> SpoolingWriter:
    writer = tracker.ports.writer
    assert isinstance(writer, SpoolingWriter)
    return writer


@pytest.mark.parametrize("failure", ["off", "unlock"])
def test_a_retry_whose_store_lock_fails_keeps_the_change_instead_of_raising_into_the_host(
    tmp_path: Path, failure: str
) -> None:
    """The retry lock failing to be taken (store away) or released (connection lost) keeps the change; it lands once."""
    store = LockingStore()
    host = spooling(store, tmp_path / "host.db", PauseThen(failure, store.locking), seed=1)
    other = spooling(store, tmp_path / "other.db", NoPause(), seed=2)
    try:
        iid = host.start_iteration("agent-1", 1)
        other.update_metrics(iid, {"scan_generation_tokens": 7})  # takes version 2: the host's copy is stale
        host.update_phase(iid, "scan_generation")  # loses the race, then the retry lock fails
        assert host.conflicts_retried == 1
        store.recorder.up = True
        store.locking.unlock_fails = False
        flushed = spool_of(host).flush()
        assert (flushed.stuck, flushed.waiting) == (0, 0)
        events = host.history(iid)
        assert [e.originator_version for e in events] == [1, 2, 3]
        state = host.get_iteration(iid)
        assert (state.phase, state.metrics["scan_generation_tokens"]) == ("scan_generation", 7)
    finally:
        host.close()
        other.close()


@pytest.mark.parametrize(("environment", "given"), [("n", {"ITERTRACK_MIGRATE": ""}), ("  ", {})])
def test_a_blank_migrate_setting_means_the_default_wherever_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: str, given: dict[str, str]
) -> None:
    """A blank value means the default (migrate SQLite): in env= it masks the environment; spaces count as blank."""
    monkeypatch.setenv("ITERTRACK_MIGRATE", environment)
    with PerformanceTracker(store=f"sqlite:///{tmp_path / 'new.db'}", env=given) as tracker:
        iid = tracker.start_iteration("agent-1", 1)
        assert tracker.get_iteration(iid).version == 1
