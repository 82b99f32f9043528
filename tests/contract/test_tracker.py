"""The tracker's contract, run against every store: memory, a SQLite file, PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import pytest
from fake_clock import FakeClock

from itertrack.adapters.bootstrap import store_of
from itertrack.domain import (
    DuplicateIterationError,
    InvalidInputError,
    InvalidIterationIdError,
    IterationFinishedError,
    IterationNotFoundError,
    PerformanceTracker,
    Status,
    UnknownPhaseError,
)

Open = Callable[..., PerformanceTracker]


def test_start_returns_an_id_in_phase_initializing(any_store: str, open_tracker: Open) -> None:
    """A started iteration is running, in initializing, at version 1, with no metrics."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration(agent_id="agent-1", iteration_number=7)
    assert isinstance(iid, UUID)
    state = tracker.get_iteration(iid)
    assert (state.agent_id, state.iteration_number, state.phase, state.status) == (
        "agent-1",
        7,
        "initializing",
        Status.RUNNING,
    )
    assert (state.version, state.metrics, state.error, state.finished_at) == (1, {}, None, None)


def test_phases_and_history_are_kept_in_order(any_store: str, open_tracker: Open) -> None:
    """Each call appends one event; history returns them oldest first with versions 1..n."""
    tracker = open_tracker(any_store, clock=FakeClock())
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_phase(iid, "scan_generation")
    tracker.update_metrics(iid, {"scan_generation_tokens": 10})
    tracker.update_phase(iid, "scan_execution")
    tracker.update_phase(iid, "scan_generation")
    events = tracker.history(iid)
    assert [type(e).__name__ for e in events] == [
        "Started",
        "PhaseChanged",
        "MetricsRecorded",
        "PhaseChanged",
        "PhaseChanged",
    ]
    assert [e.originator_version for e in events] == [1, 2, 3, 4, 5]
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    state = tracker.get_iteration(iid)
    assert [p.phase for p in state.phase_history] == [
        "initializing",
        "scan_generation",
        "scan_execution",
        "scan_generation",
    ]
    assert [p.version for p in state.phase_history] == [1, 2, 4, 5]


def test_metric_totals_add_up(any_store: str, open_tracker: Open) -> None:
    """Regenerated execution tokens add to the running total; other metrics keep theirs."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_metrics(iid, {"execution_generation_tokens": 1500, "execution_generation_time_ms": 20})
    tracker.update_metrics(iid, {"execution_generation_tokens": 700})
    tracker.update_metrics(iid, {"backtest_execution_time_ms": 1520})
    assert tracker.get_iteration(iid).metrics == {
        "execution_generation_tokens": 2200,
        "execution_generation_time_ms": 20,
        "backtest_execution_time_ms": 1520,
    }


@pytest.mark.parametrize(("terminal", "error"), [("completed", None), ("failed", "timeout in backtester")])
def test_terminal_phase_is_final(any_store: str, open_tracker: Open, terminal: str, error: str | None) -> None:
    """After a terminal phase every change is refused and the history does not grow."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_phase(iid, terminal, error=error)
    before = tracker.history(iid)
    with pytest.raises(IterationFinishedError):
        tracker.update_phase(iid, "analysis")
    with pytest.raises(IterationFinishedError):
        tracker.update_metrics(iid, {"analysis_tokens": 1})
    with pytest.raises(IterationFinishedError):
        tracker.update_phase(iid, "failed", error="again")
    assert tracker.history(iid) == before
    state = tracker.get_iteration(iid)
    assert state.status.value == terminal
    assert state.error == error
    assert state.finished_at == state.updated_at


def test_failed_needs_an_error_and_nothing_is_written_without_it(any_store: str, open_tracker: Open) -> None:
    """`failed` without an error, or another phase with one, appends nothing."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    with pytest.raises(InvalidInputError, match="error=None"):
        tracker.update_phase(iid, "failed")
    with pytest.raises(InvalidInputError, match="error='oops'"):
        tracker.update_phase(iid, "analysis", error="oops")
    with pytest.raises(UnknownPhaseError):
        tracker.update_phase(iid, "teleport")
    assert len(tracker.history(iid)) == 1


def test_caller_supplied_id_is_used_and_a_duplicate_is_refused(any_store: str, open_tracker: Open) -> None:
    """The host's id becomes the aggregate id; starting it again raises and changes nothing."""
    tracker = open_tracker(any_store)
    chosen = UUID("7d4e2c1a-9b8f-4a6e-8d3c-2b1a0f9e8d7c")
    assert tracker.start_iteration("agent-1", 8, iteration_id=chosen) == chosen
    with pytest.raises(DuplicateIterationError, match=str(chosen)):
        tracker.start_iteration("agent-2", 9, iteration_id=str(chosen))
    assert tracker.get_iteration(chosen).agent_id == "agent-1"
    assert len(tracker.history(chosen)) == 1


def test_unknown_and_malformed_ids(any_store: str, open_tracker: Open) -> None:
    """An unknown id is not found; a malformed one is refused before any lookup."""
    tracker = open_tracker(any_store)
    unknown = UUID("00000000-0000-4000-8000-000000000001")
    with pytest.raises(IterationNotFoundError, match=str(unknown)):
        tracker.get_iteration(unknown)
    with pytest.raises(IterationNotFoundError):
        tracker.update_phase(unknown, "analysis")
    with pytest.raises(IterationNotFoundError):
        tracker.history(unknown)
    with pytest.raises(InvalidIterationIdError, match="iteration_id='not-a-uuid'"):
        tracker.update_metrics("not-a-uuid", {"a_tokens": 1})
    with pytest.raises(InvalidIterationIdError, match="iteration_id=42"):
        tracker.get_iteration(42)  # type: ignore[arg-type]


def test_a_fresh_tracker_reloads_the_state(durable_store: str, open_tracker: Open) -> None:
    """A second tracker instance on the same store sees everything the first one wrote."""
    first = open_tracker(durable_store)
    iid = first.start_iteration("agent-1", 3)
    first.update_phase(iid, "backtest_execution")
    first.update_metrics(iid, {"backtest_execution_time_ms": 1520})
    first.update_phase(iid, "failed", error="timeout in backtester")
    expected = first.get_iteration(iid)
    first.close()
    second = open_tracker(durable_store, migrate=False)
    assert second.get_iteration(iid) == expected
    assert [e.originator_version for e in second.history(iid)] == [1, 2, 3, 4]


def test_a_stale_cached_copy_is_reloaded_on_conflict(durable_store: str, open_tracker: Open) -> None:
    """When another tracker moved the iteration on, a change re-loads it and applies on top."""
    a = open_tracker(durable_store)
    b = open_tracker(durable_store, migrate=False)
    iid = a.start_iteration("agent-1", 1)
    a.update_metrics(iid, {"analysis_tokens": 1})  # a's cache is now at version 2
    b.update_metrics(iid, {"analysis_tokens": 10})  # version 3, unseen by a's cache
    a.update_metrics(iid, {"analysis_tokens": 100})  # conflicts on version 3, re-loads, lands as 4
    assert a.conflicts_retried == 1
    state = b.get_iteration(iid)
    assert state.metrics == {"analysis_tokens": 111}
    assert state.version == 4
    b.update_phase(iid, "completed")
    with pytest.raises(IterationFinishedError):
        a.update_metrics(iid, {"analysis_tokens": 1})  # the re-load sees the terminal phase


def test_a_read_brings_the_cached_copy_up_to_date(durable_store: str, open_tracker: Open) -> None:
    """Reads see other trackers' writes, and the next change then lands without a conflict."""
    a = open_tracker(durable_store)
    b = open_tracker(durable_store, migrate=False)
    iid = a.start_iteration("agent-1", 1)
    a.update_metrics(iid, {"analysis_tokens": 1})
    b.update_metrics(iid, {"analysis_tokens": 10})
    assert a.get_iteration(iid).metrics == {"analysis_tokens": 11}
    a.update_metrics(iid, {"analysis_tokens": 100})
    assert a.conflicts_retried == 0
    assert b.get_iteration(iid).metrics == {"analysis_tokens": 111}


def test_track_phase_times_the_block(any_store: str, open_tracker: Open) -> None:
    """track_phase enters the phase and adds the block's monotonic duration to `<phase>_time_ms`."""
    clock = FakeClock()
    tracker = open_tracker(any_store, clock=clock)
    iid = tracker.start_iteration("agent-1", 1)
    with tracker.track_phase(iid, "analysis"):
        clock.advance(250)
    with tracker.track_phase(iid, "analysis"):
        clock.advance(50.5)
    state = tracker.get_iteration(iid)
    assert state.phase == "analysis"
    assert state.metrics == {"analysis_time_ms": 300.5}


def test_track_phase_marks_failed_and_reraises(any_store: str, open_tracker: Open) -> None:
    """An exception in the block records the time, marks the iteration failed with its message, and propagates."""
    clock = FakeClock()
    tracker = open_tracker(any_store, clock=clock)
    iid = tracker.start_iteration("agent-1", 1)

    def backtest() -> None:
        with tracker.track_phase(iid, "backtest_execution"):
            clock.advance(1000)
            raise TimeoutError("backtester timed out")

    with pytest.raises(TimeoutError, match="backtester timed out"):
        backtest()
    state = tracker.get_iteration(iid)
    assert (state.phase, state.status, state.error) == ("failed", Status.FAILED, "backtester timed out")
    assert state.metrics == {"backtest_execution_time_ms": 1000.0}
    assert [p.phase for p in state.phase_history] == ["initializing", "backtest_execution", "failed"]


def test_record_usage_sums_claude_usage_into_phase_tokens(any_store: str, open_tracker: Open) -> None:
    """Two LLM calls in analysis add up in analysis_tokens, and each count is kept."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    tracker.record_usage(iid, "analysis", {"input_tokens": 100, "output_tokens": 40, "cache_read_input_tokens": 60})
    tracker.record_usage(iid, "analysis", {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 2})
    metrics = tracker.get_iteration(iid).metrics
    assert metrics["analysis_tokens"] == 217
    assert (metrics["analysis_input_tokens"], metrics["analysis_output_tokens"]) == (110, 45)
    assert (metrics["analysis_cache_read_input_tokens"], metrics["analysis_cache_creation_input_tokens"]) == (60, 2)


def test_host_registered_phase(any_store: str, open_tracker: Open) -> None:
    """A phase the host registered is accepted; it stays unknown to a tracker without it."""
    tracker = open_tracker(any_store, phases=["risk_review"])
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_phase(iid, "risk_review")
    assert tracker.get_iteration(iid).phase == "risk_review"
    plain = open_tracker("memory://")
    other = plain.start_iteration("agent-1", 1)
    with pytest.raises(UnknownPhaseError):
        plain.update_phase(other, "risk_review")


def test_a_commit_whose_acknowledgement_was_lost_is_not_applied_twice(
    any_store: str, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the insert committed but the caller saw a key conflict (a retried commit), the change counts once."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_metrics(iid, {"analysis_tokens": 5})
    original = store_of(tracker).recorder.insert_events

    def commit_then_lose_the_ack(stored_events: object, **kwargs: object) -> object:
        original(stored_events, **kwargs)  # type: ignore[arg-type]
        return original(stored_events, **kwargs)  # type: ignore[arg-type]  # the retry meets its own rows

    monkeypatch.setattr(store_of(tracker).recorder, "insert_events", commit_then_lose_the_ack)
    tracker.update_metrics(iid, {"analysis_tokens": 7})
    tracker.update_phase(iid, "analysis")
    new_id = tracker.start_iteration("agent-1", 2)
    monkeypatch.undo()
    state = tracker.get_iteration(iid)
    assert state.metrics == {"analysis_tokens": 12}
    assert state.version == 4
    assert tracker.conflicts_retried == 0
    assert len(tracker.history(new_id)) == 1


def test_equal_events_from_two_writers_are_both_applied(durable_store: str, open_tracker: Open) -> None:
    """Two trackers making the same change at the same instant from the same version: both land (total 2)."""
    a = open_tracker(durable_store, clock=FakeClock(step_ms=0))
    b = open_tracker(durable_store, migrate=False, clock=FakeClock(step_ms=0))
    iid = a.start_iteration("agent-1", 1)
    b.get_iteration(iid)  # both now cache version 1
    a.update_metrics(iid, {"analysis_tokens": 1})
    b.update_metrics(iid, {"analysis_tokens": 1})  # same content, same timestamp, same version: a real conflict
    state = a.get_iteration(iid)
    assert state.metrics == {"analysis_tokens": 2}
    assert state.version == 3
    assert b.conflicts_retried == 1


def test_a_duplicate_start_at_the_same_instant_is_refused(durable_store: str, open_tracker: Open) -> None:
    """Starting an existing id again is a DuplicateIterationError even when every field and the time are equal."""
    clock = FakeClock(step_ms=0)
    tracker = open_tracker(durable_store, clock=clock)
    chosen = UUID("3e0d5c4b-2a19-4876-9543-21fedcba9876")
    tracker.start_iteration("agent-1", 1, iteration_id=chosen)
    with pytest.raises(DuplicateIterationError):
        open_tracker(durable_store, migrate=False, clock=clock).start_iteration("agent-1", 1, iteration_id=chosen)


def test_terminal_phases_cannot_be_timed(any_store: str, open_tracker: Open) -> None:
    """track_phase refuses completed and failed up front, writing nothing."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    for terminal in ("completed", "failed"):
        with pytest.raises(InvalidInputError, match="cannot be timed"), tracker.track_phase(iid, terminal):
            pass
    assert len(tracker.history(iid)) == 1


def test_a_total_past_64_bits_is_refused(any_store: str, open_tracker: Open) -> None:
    """Each amount fits, but their sum would not: the second update is refused and nothing is written."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_metrics(iid, {"analysis_tokens": 2**63 - 1})
    with pytest.raises(InvalidInputError, match="would take the total past"):
        tracker.update_metrics(iid, {"analysis_tokens": 1})
    assert tracker.get_iteration(iid).metrics == {"analysis_tokens": 2**63 - 1}
