"""Audit replay through the replay cache (domain/service/replay_cache.py): every answer equals a full fold of
the stored events, however the reads and writes interleave; events another writer stores after the cached
prefix are seen; a warm read asks the store only for events after the prefix; the bound holds."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from fake_clock import START, FakeClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itertrack.domain import InvalidInputError, IterationNotFoundError, PerformanceTracker, StoreConfigError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.state import IterationState
from itertrack.domain.service.replay import state_of
from itertrack.domain.service.replay_cache import ReplayCache

Open = Callable[..., PerformanceTracker]


def stored(tracker: PerformanceTracker, iid: UUID) -> list[Iteration.Event]:
    """The iteration's events as the store holds them, read past every cache."""
    return tracker.ports.store.events(iid)


def expected_version(events: list[Iteration.Event], at: datetime) -> int:
    """The last version before the first event stamped after `at` (0: `at` is before the first event)."""
    version = 0
    for event in events:
        if event.timestamp > at:
            break
        version = event.originator_version
    return version


def replays(tracker: PerformanceTracker) -> ReplayCache:
    """The tracker's replay cache (private: the tests look at its size)."""
    cache: ReplayCache = tracker._reads.replays  # noqa: SLF001
    return cache


# One write: a phase change, a metrics update or an LLM call, after `gap_ms` (0: the same instant; negative:
# a writer whose clock is behind).
write = st.tuples(
    st.sampled_from(["phase", "metrics", "call"]),
    st.integers(min_value=1, max_value=10**6),
    st.sampled_from([0, 0, 1, 7, 250, -3]),
)
# A script: batches of writes, each followed by reads (a version, or an instant, as fractions of the way
# through what is stored then; beyond 1.0 is past the end).
script = st.lists(
    st.tuples(
        st.lists(write, max_size=6),
        st.lists(st.tuples(st.booleans(), st.floats(min_value=-0.1, max_value=1.3)), max_size=6),
    ),
    min_size=1,
    max_size=5,
)


def apply_write(tracker: PerformanceTracker, clock: FakeClock, iid: UUID, change: tuple[str, int, int]) -> None:
    kind, n, gap_ms = change
    clock.advance(gap_ms)
    if kind == "phase":
        tracker.update_phase(iid, ["scan_generation", "backtest_execution", "analysis"][n % 3])
    elif kind == "metrics":
        tracker.update_metrics(iid, {"analysis_tokens": n, "scan_generation_time_ms": n / 4})
    else:
        usage = {"input_tokens": n, "output_tokens": n % 977}
        tracker.record_llm_call(iid, "analysis", model="claude-sonnet-4-5", usage=usage)


def check_reads(tracker: PerformanceTracker, iid: UUID, reads: list[tuple[bool, float]]) -> None:
    """Each read equals the fold of the stored events it selects, or raises the error a full read raises."""
    events = stored(tracker, iid)
    first, last = events[0].timestamp, max(e.timestamp for e in events)
    for by_version, where in reads:
        if by_version:
            version = max(1, round(where * len(events)))
            if version > len(events):
                with pytest.raises(InvalidInputError, match=f"beyond the iteration's last version {len(events)}"):
                    tracker.get_iteration(iid, version=version)
                continue
            assert tracker.get_iteration(iid, version=version) == state_of(events[:version])
        else:
            at = first + (last - first) * where + timedelta(microseconds=round(where * 1000))
            version = expected_version(events, at)
            if version == 0:
                with pytest.raises(InvalidInputError, match="is before the iteration began"):
                    tracker.get_iteration(iid, at=at)
                continue
            assert tracker.version_at(iid, at) == version
            assert tracker.get_iteration(iid, at=at) == state_of(events[:version])
    # Every version, and instants at, between and around every event.
    for version in range(1, len(events) + 1):
        assert tracker.get_iteration(iid, version=version) == state_of(events[:version])
    for event in events:
        for at in (event.timestamp, event.timestamp + timedelta(microseconds=500)):
            assert tracker.get_iteration(iid, at=at) == state_of(events[: expected_version(events, at)])
    assert tracker.history(iid) == events


@pytest.mark.parametrize("entries", [10_000, 7, 0])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=script, finish=st.booleans())
def test_states_equal_a_full_fold_however_reads_and_writes_interleave(
    open_tracker: Open, entries: int, steps: list[Any], finish: bool
) -> None:
    """Generated iterations (shared and backward timestamps included), read between writes: every state as of
    a version or an instant equals a fold of the stored events up to it, with a large, a tiny and no cache."""
    clock = FakeClock(step_ms=0)
    tracker = open_tracker("memory://", clock=clock, env={"ITERTRACK_REPLAY_CACHE_ENTRIES": str(entries)})
    iid = tracker.start_iteration("agent-1", 1)
    for writes, reads in steps:
        for change in writes:
            apply_write(tracker, clock, iid, change)
        check_reads(tracker, iid, reads)
        assert replays(tracker).entries <= entries
    if finish:
        tracker.update_phase(iid, "completed")
        check_reads(tracker, iid, [(True, 1.0), (False, 1.2), (True, 1.3)])


def test_a_durable_store_gives_the_same_states(durable_store: str, open_tracker: Open) -> None:
    """The same checks on SQLite and PostgreSQL, warm and after the cache is cleared."""
    clock = FakeClock(step_ms=3)
    tracker = open_tracker(durable_store, clock=clock)
    iid = tracker.start_iteration("agent-1", 1)
    for n in range(12):
        apply_write(tracker, clock, iid, (["phase", "metrics", "call"][n % 3], n + 1, [0, 5, -2][n % 3]))
    check_reads(tracker, iid, [(True, 0.5), (False, 0.5), (False, -0.1), (True, 1.2)])
    replays(tracker).clear()
    check_reads(tracker, iid, [(False, 0.3), (True, 0.9)])


def test_another_writers_newer_events_are_seen(durable_store: str, open_tracker: Open) -> None:
    """A reader whose cache holds an iteration's prefix sees the events another tracker (another process's
    cache and connections) stores after it: a version beyond the prefix, an instant after it, the history."""
    clock = FakeClock(step_ms=10)
    reader = open_tracker(durable_store, clock=clock)
    writer = open_tracker(durable_store, clock=clock)
    iid = writer.start_iteration("agent-1", 1)
    writer.update_metrics(iid, {"analysis_tokens": 5})
    assert reader.get_iteration(iid, version=2).metrics == {"analysis_tokens": 5}
    assert reader.get_iteration(iid, at=clock.now()).version == 2
    with pytest.raises(InvalidInputError, match="beyond the iteration's last version 2"):
        reader.get_iteration(iid, version=3)

    writer.update_metrics(iid, {"analysis_tokens": 7})
    writer.update_phase(iid, "analysis")
    assert reader.get_iteration(iid, version=3).metrics == {"analysis_tokens": 12}
    assert reader.get_iteration(iid, at=clock.now()).phase == "analysis"
    assert [e.originator_version for e in reader.history(iid)] == [1, 2, 3, 4]
    writer.update_phase(iid, "completed")
    assert reader.version_at(iid, clock.now()) == 5
    assert reader.get_iteration(iid, version=5).status == "completed"


def test_a_writer_process_newer_events_are_seen(durable_store: str, open_tracker: Open) -> None:
    """The same with the writer in another process: the reader's held prefix is extended, not trusted."""
    reader = open_tracker(durable_store)
    iid = reader.start_iteration("agent-1", 1)
    before = reader.get_iteration(iid, at=datetime.now(UTC))
    assert (before.version, reader.history(iid)[-1].originator_version) == (1, 1)
    code = (
        "import sys; from itertrack.domain import PerformanceTracker\n"
        "with PerformanceTracker(store=sys.argv[1]) as t:\n"
        "    t.update_metrics(sys.argv[2], {'analysis_tokens': 4}); t.update_phase(sys.argv[2], 'completed')\n"
    )
    subprocess.run([sys.executable, "-c", code, durable_store, str(iid)], check=True, timeout=120)
    now = datetime.now(UTC) + timedelta(seconds=1)
    assert reader.get_iteration(iid, at=now).status == "completed"
    assert reader.get_iteration(iid, version=2).metrics == {"analysis_tokens": 4}
    assert [e.originator_version for e in reader.history(iid)] == [1, 2, 3]


def test_a_warm_read_asks_the_store_only_for_events_after_the_prefix(
    sqlite_store: str, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Versions and instants inside the cached prefix read nothing; an instant after it reads the newer events
    once (of a running iteration: a finished one can have none)."""
    clock = FakeClock(step_ms=10)
    tracker = open_tracker(sqlite_store, clock=clock)
    iid = tracker.start_iteration("agent-1", 1)
    for n in range(19):
        tracker.update_metrics(iid, {"analysis_tokens": n})
    events = tracker.history(iid)
    queries: list[dict[str, Any]] = []
    store = tracker.ports.store
    real = store.events

    def counted(iteration_id: UUID, **kwargs: Any) -> list[Iteration.Event]:
        queries.append(kwargs)
        return real(iteration_id, **kwargs)

    monkeypatch.setattr(store, "events", counted)
    for version in (1, 10, 20, 10):
        tracker.get_iteration(iid, version=version)
    tracker.get_iteration(iid, at=events[9].timestamp)
    tracker.version_at(iid, events[0].timestamp)
    with pytest.raises(InvalidInputError, match="before the iteration began"):
        tracker.get_iteration(iid, at=events[0].timestamp - timedelta(seconds=1))
    with pytest.raises(InvalidInputError, match="beyond"):
        tracker.get_iteration(iid, version=21)
    assert queries == [{"gt": 20, "lte": 21}]

    queries.clear()
    assert tracker.get_iteration(iid, at=events[-1].timestamp + timedelta(hours=1)).version == 20
    assert queries == [{"gt": 20, "lte": None}]

    tracker.update_phase(iid, "completed")
    tracker.get_iteration(iid, version=21)
    queries.clear()
    assert tracker.get_iteration(iid, at=clock.now() + timedelta(days=1)).version == 21
    assert tracker.history(iid)[-1].originator_version == 21
    with pytest.raises(InvalidInputError, match="beyond the iteration's last version 21"):
        tracker.get_iteration(iid, version=22)
    assert queries == []


def test_the_bound_holds_and_a_larger_iteration_is_still_answered(sqlite_store: str, open_tracker: Open) -> None:
    """With a bound of 30 entries, reading every version of many iterations (one of 40 events) never keeps more
    than 30, keeps the most recently read, and every answer is still the full fold."""
    tracker = open_tracker(sqlite_store, clock=FakeClock(), env={"ITERTRACK_REPLAY_CACHE_ENTRIES": "30"})
    ids = []
    for number, size in enumerate([5, 40, 8, 3, 12]):
        iid = tracker.start_iteration("agent-1", number)
        for n in range(size - 1):
            tracker.update_metrics(iid, {"analysis_tokens": n})
        ids.append(iid)
    for iid in ids + ids[::-1]:
        events = stored(tracker, iid)
        for version in range(1, len(events) + 1):
            assert tracker.get_iteration(iid, version=version) == state_of(events[:version])
            assert replays(tracker).entries <= 30
    assert replays(tracker).get(ids[0]) is not None  # the last read (5 events, 5 states) is kept
    assert replays(tracker).get(ids[1]) is None  # 40 events never fit


def test_unknown_iterations_and_bad_requests_raise_what_they_raised_before(open_tracker: Open) -> None:
    """No events: `IterationNotFoundError` for every read (and nothing is kept); bad versions and instants are
    `InvalidInputError` naming the field, cold or warm."""
    tracker = open_tracker("memory://", clock=FakeClock())
    missing = uuid4()
    for read in (
        lambda: tracker.get_iteration(missing, version=1),
        lambda: tracker.get_iteration(missing, at=START),
        lambda: tracker.version_at(missing, START),
        lambda: tracker.history(missing),
    ):
        with pytest.raises(IterationNotFoundError):
            read()
    assert len(replays(tracker)) == 0
    iid = tracker.start_iteration("agent-1", 1)
    for _ in range(2):  # cold, then warm
        for bad in (0, -1, True, 1.5, "2"):
            with pytest.raises(InvalidInputError, match="version"):
                tracker.get_iteration(iid, version=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="timezone-aware"):
            tracker.get_iteration(iid, at=datetime(2026, 1, 2))
        with pytest.raises(InvalidInputError, match="must be a datetime"):
            tracker.version_at(iid, "2026-01-02")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="beyond the iteration's last version 1"):
            tracker.get_iteration(iid, version=2)
        assert isinstance(tracker.get_iteration(iid, version=1), IterationState)


def test_a_returned_state_is_the_callers_own(open_tracker: Open) -> None:
    """Changing the metrics of a returned state does not change what the next read returns."""
    tracker = open_tracker("memory://", clock=FakeClock())
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_metrics(iid, {"analysis_tokens": 3})
    tracker.get_iteration(iid, version=2).metrics["analysis_tokens"] = 99
    assert tracker.get_iteration(iid, version=2).metrics == {"analysis_tokens": 3}


def test_a_bad_bound_is_refused_naming_the_setting(open_tracker: Open) -> None:
    with pytest.raises(StoreConfigError, match=r"ITERTRACK_REPLAY_CACHE_ENTRIES.*whole number of entries"):
        open_tracker("memory://", env={"ITERTRACK_REPLAY_CACHE_ENTRIES": "-1"})
