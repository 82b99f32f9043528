"""The Iteration aggregate's rules, asserted on the events it produces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from itertrack.domain import (
    InvalidInputError,
    Iteration,
    IterationFinishedError,
    RecordAlreadySavedError,
    Status,
)
from itertrack.domain.model.change_keys import is_keyed, keyed_event_id

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ID = UUID("12345678-1234-4678-9234-567812345678")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def started() -> Iteration:
    iteration = Iteration.start(ID, "agent-1", 7, T0)
    iteration.collect_events()
    return iteration


def test_start_produces_one_started_event_in_initializing() -> None:
    """Starting an iteration records who and which number, at version 1, in phase initializing."""
    iteration = Iteration.start(ID, "agent-1", 7, T0)
    (event,) = iteration.collect_events()
    assert isinstance(event, Iteration.Started)
    assert (event.originator_id, event.originator_version, event.timestamp) == (ID, 1, T0)
    assert (event.agent_id, event.iteration_number) == ("agent-1", 7)
    assert iteration.phase == "initializing"
    assert iteration.status is Status.RUNNING


def test_phase_change_produces_phase_changed_event_and_history_entry() -> None:
    """A phase change is one PhaseChanged event; the phase history gains the entry with its time."""
    iteration = started()
    iteration.change_phase("backtest_execution", None, at(1))
    (event,) = iteration.collect_events()
    assert isinstance(event, Iteration.PhaseChanged)
    assert (event.phase, event.error, event.originator_version) == ("backtest_execution", None, 2)
    assert [(v.phase, v.entered_at) for v in iteration.phase_history] == [
        ("initializing", T0),
        ("backtest_execution", at(1)),
    ]


def test_failed_requires_an_error_message() -> None:
    """Entering `failed` without an error is refused and produces no event."""
    iteration = started()
    with pytest.raises(InvalidInputError, match="error=None"):
        iteration.change_phase("failed", None, at(1))
    assert iteration.collect_events() == []
    assert iteration.phase == "initializing"


def test_error_message_is_refused_for_other_phases() -> None:
    """An error message with a non-failed phase is refused and produces no event."""
    iteration = started()
    with pytest.raises(InvalidInputError, match="only allowed with phase 'failed'"):
        iteration.change_phase("analysis", "boom", at(1))
    assert iteration.collect_events() == []


def test_failed_records_the_error_and_sets_status() -> None:
    """Entering `failed` stores the message on the event and marks the iteration failed."""
    iteration = started()
    iteration.change_phase("failed", "timeout in backtester", at(1))
    (event,) = iteration.collect_events()
    assert isinstance(event, Iteration.PhaseChanged)
    assert event.error == "timeout in backtester"
    assert iteration.status is Status.FAILED
    assert iteration.error == "timeout in backtester"


@pytest.mark.parametrize("terminal", ["completed", "failed"])
def test_terminal_phase_refuses_every_later_change(terminal: str) -> None:
    """After completed or failed, phase changes, metrics and saving are all refused, with no event."""
    iteration = started()
    iteration.change_phase(terminal, "boom" if terminal == "failed" else None, at(1))
    iteration.collect_events()
    with pytest.raises(IterationFinishedError, match=terminal):
        iteration.change_phase("analysis", None, at(2))
    with pytest.raises(IterationFinishedError):
        iteration.record_metrics({"analysis_tokens": 1}, at(2))
    with pytest.raises(IterationFinishedError):
        iteration.mark_saved("completed", at(2))
    with pytest.raises(IterationFinishedError):
        iteration.change_phase("failed", "late", at(2))
    assert iteration.collect_events() == []


def test_metrics_are_additive_across_events() -> None:
    """Two updates of the same metric add up; other metrics keep their own totals."""
    iteration = started()
    iteration.record_metrics({"execution_generation_tokens": 1200, "scan_execution_time_ms": 5}, at(1))
    iteration.record_metrics({"execution_generation_tokens": 800}, at(2))
    events = iteration.collect_events()
    assert [type(e) for e in events] == [Iteration.MetricsRecorded, Iteration.MetricsRecorded]
    assert iteration.metrics == {"execution_generation_tokens": 2000, "scan_execution_time_ms": 5}


def test_int_and_float_amounts_sum_to_float() -> None:
    """An int total plus a float amount becomes the float sum."""
    iteration = started()
    iteration.record_metrics({"analysis_time_ms": 10}, at(1))
    iteration.record_metrics({"analysis_time_ms": 0.5}, at(2))
    assert iteration.metrics["analysis_time_ms"] == pytest.approx(10.5)
    assert isinstance(iteration.metrics["analysis_time_ms"], float)


def test_saving_twice_is_refused() -> None:
    """The saving step runs once per iteration."""
    iteration = started()
    iteration.mark_saved("completed", at(1))
    with pytest.raises(RecordAlreadySavedError):
        iteration.mark_saved("completed", at(2))
    (event,) = iteration.collect_events()
    assert isinstance(event, Iteration.RecordSaved)
    assert iteration.saved


def test_replaying_events_rebuilds_the_same_state() -> None:
    """Mutating a fresh aggregate with the recorded events gives the same state as the original."""
    original = Iteration.start(ID, "agent-2", 3, T0)
    original.change_phase("scan_generation", None, at(1))
    original.record_metrics({"scan_generation_tokens": 42}, at(2))
    original.change_phase("failed", "boom", at(3))
    events = original.collect_events()
    replayed: Iteration | None = None
    for event in events:
        replayed = event.mutate(replayed)
    assert replayed is not None
    assert (replayed.phase, replayed.error, replayed.metrics, replayed.version) == (
        "failed",
        "boom",
        {"scan_generation_tokens": 42},
        4,
    )
    assert replayed.phase_history == original.phase_history


def test_events_are_frozen() -> None:
    """An event cannot be changed after it is made."""
    iteration = Iteration.start(ID, "agent-1", 1, T0)
    (event,) = iteration.collect_events()
    assert isinstance(event, Iteration.Started)
    with pytest.raises(ValueError, match="frozen"):
        event.agent_id = "someone else"  # type: ignore[misc]  # frozen: the point of the test


def test_events_refuse_unknown_fields() -> None:
    """Events are `extra="forbid"`: a stored event with an unknown field does not validate."""
    with pytest.raises(ValueError, match="extra"):
        Iteration.PhaseChanged(
            originator_id=ID,
            originator_version=2,
            timestamp=T0,
            phase="analysis",
            surprise=1,  # type: ignore[call-arg]
        )


def test_events_refuse_naive_timestamps() -> None:
    """Event timestamps must be timezone-aware."""
    with pytest.raises(ValueError, match="timezone"):
        Iteration.PhaseChanged(originator_id=ID, originator_version=2, timestamp=datetime(2026, 1, 1), phase="analysis")


def test_the_iteration_remembers_its_keyed_changes_also_when_replayed() -> None:
    """Events of keyed changes (event ids derived from a change_id) are remembered by id with a fingerprint of
    their content, when applied and when replayed from the stored events; unkeyed ones are not."""
    keyed = keyed_event_id(ID, "tokens-1")
    assert is_keyed(keyed)
    assert keyed == keyed_event_id(ID, "tokens-1")
    assert not is_keyed(keyed_event_id(ID, None))
    iteration = Iteration.start(ID, "agent-1", 7, T0)
    iteration.record_metrics({"analysis_tokens": 5}, at(1), event_id=keyed)
    iteration.record_metrics({"analysis_tokens": 1}, at(2))
    events = iteration.collect_events()
    replayed: Iteration | None = None
    for event in events:
        replayed = event.mutate(replayed)
    assert replayed is not None
    for copy in (iteration, replayed):
        assert copy.keyed_changes == {keyed: Iteration.MetricsRecorded.fingerprint_of(metrics={"analysis_tokens": 5})}
    assert Iteration.MetricsRecorded.fingerprint_of(metrics={"analysis_tokens": 5}) != (
        Iteration.MetricsRecorded.fingerprint_of(metrics={"analysis_tokens": 6})
    )
