"""What a tracked change on a cached iteration does not do (no timings: see scripts/bench*.py for those).

Issue 18 cut the Python per change; these tests hold the cuts that are behaviour, not speed: the cached
copy is changed in place (no deep copy, no read of the store), and a setting that asks for copies still
gets them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import eventsourcing.application
import pytest

from itertrack.adapters.bootstrap import store_of
from itertrack.domain import PerformanceTracker
from itertrack.domain.model.events import new_event_id
from itertrack.domain.service.clock import SystemClock

Open = Callable[..., PerformanceTracker]


def _refuse(what: str) -> Callable[..., Any]:
    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError(f"a change on a cached iteration called {what}")

    return refuse


def test_a_change_on_a_cached_iteration_neither_reads_the_store_nor_copies(
    any_store: str, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metrics and phase changes of a cached iteration are written without a read or a deep copy."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    store = store_of(tracker)
    monkeypatch.setattr(eventsourcing.application, "deepcopy", _refuse("deepcopy"))
    monkeypatch.setattr(store.recorder, "select_events", _refuse("select_events"))
    tracker.update_metrics(iid, {"backtest_execution_time_ms": 1520})
    tracker.update_phase(iid, "scan_generation")
    tracker.update_metrics(iid, {"backtest_execution_time_ms": 0.5})
    monkeypatch.undo()
    state = tracker.get_iteration(iid)
    assert (state.version, state.phase, state.metrics) == (4, "scan_generation", {"backtest_execution_time_ms": 1520.5})
    assert [e.originator_version for e in tracker.history(iid)] == [1, 2, 3, 4]


@pytest.mark.parametrize(("setting", "copies"), [("n", False), ("y", True)])
def test_load_answers_from_the_cache_only_as_the_settings_say(setting: str, copies: bool, open_tracker: Open) -> None:
    """`load` hands out the cached object itself only when the library would (no deep copy configured)."""
    tracker = open_tracker("memory://", env={"DEEPCOPY_FROM_AGGREGATE_CACHE": setting})
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_metrics(iid, {"a_tokens": 3})
    store = store_of(tracker)
    assert (store.load(iid) is not store.load(iid)) is copies
    tracker.update_metrics(iid, {"a_tokens": 4})
    assert tracker.get_iteration(iid).metrics == {"a_tokens": 7}


def test_event_ids_are_random_version_4_uuids() -> None:
    """`new_event_id` makes what `UUID(bytes=..., version=4)` makes from 16 random bytes (without its checks)."""
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for made in ids:
        assert type(made) is uuid.UUID
        assert (made.version, made.variant) == (4, uuid.RFC_4122)
        assert made == uuid.UUID(bytes=made.bytes, version=4) == uuid.UUID(str(made))
        assert hash(made) == hash(uuid.UUID(str(made)))
        assert made.is_safe is uuid.SafeUUID.unknown


def test_event_ids_make_no_system_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """An id costs no `os.urandom` (it releases the GIL, and taking it back can wait out another thread's whole
    switch interval: 5 ms on an async host's event loop, once per change). The iteration ids of
    `SystemClock.new_id` come from the same source."""

    def no_urandom(size: int) -> bytes:
        raise AssertionError(f"os.urandom({size}) called for an id")

    monkeypatch.setattr(os, "urandom", no_urandom)
    ids = {new_event_id() for _ in range(1000)} | {SystemClock().new_id() for _ in range(1000)}
    assert len(ids) == 2000
    assert {made.version for made in ids} == {4}
