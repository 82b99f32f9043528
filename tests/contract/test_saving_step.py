"""The saving step over every store: the record under the tracked iteration's id, in the transaction of its event;
records of another iteration and unstorable values refused with nothing written."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from itertrack.domain import (
    InvalidInputError,
    Iteration,
    IterationRecord,
    PerformanceTracker,
    RecordAlreadySavedError,
)

Open = Callable[..., PerformanceTracker]


def test_saving_step_stores_the_record_under_the_iteration_id(any_store: str, open_tracker: Open) -> None:
    """save_iteration with the tracked id stores the record there and appends RecordSaved."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 4)
    record = IterationRecord(
        id=iid,
        agent_id="agent-1",
        iteration_number=4,
        strategy={"name": "momentum", "params": [1, 2.5, None, True]},
        scan_results=[{"ticker": "AAPL"}],
        backtest_results={"sharpe": 1.25},
        analysis={"summary": "ok"},
        refinements=[],
        manual_guidance="prefer large caps",
    )
    assert tracker.save_iteration(record) == iid
    stored = tracker.get_record(iid)
    assert stored is not None
    assert stored.model_dump(exclude={"created_at"}) == record.model_dump(exclude={"created_at"})
    assert stored.created_at is not None
    assert isinstance(tracker.history(iid)[-1], Iteration.RecordSaved)
    assert tracker.get_iteration(iid).saved
    with pytest.raises(RecordAlreadySavedError):
        tracker.save_iteration(record)


def test_saving_step_without_an_id_makes_one(any_store: str, open_tracker: Open) -> None:
    """A record without an id gets a new one, under which a saved iteration is tracked."""
    tracker = open_tracker(any_store)
    new_id = tracker.save_iteration({"agent_id": "agent-9", "iteration_number": 1})
    assert tracker.get_record(new_id) is not None
    assert [type(e).__name__ for e in tracker.history(new_id)] == ["Started", "RecordSaved"]


def test_saving_step_refuses_a_record_of_another_iteration(any_store: str, open_tracker: Open) -> None:
    """A record whose agent or number differs from the tracked iteration is refused, nothing stored."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 4)
    with pytest.raises(InvalidInputError, match=r"record\.agent_id='agent-2'"):
        tracker.save_iteration({"id": iid, "agent_id": "agent-2", "iteration_number": 4})
    with pytest.raises(InvalidInputError, match=r"record\.iteration_number=5"):
        tracker.save_iteration({"id": iid, "agent_id": "agent-1", "iteration_number": 5})
    with pytest.raises(InvalidInputError, match=r"record\.strategy"):
        tracker.save_iteration({"id": iid, "agent_id": "agent-1", "iteration_number": 4, "strategy": {1, 2}})
    with pytest.raises(InvalidInputError, match=r"record\.surprise"):
        tracker.save_iteration({"id": iid, "agent_id": "agent-1", "iteration_number": 4, "surprise": 1})
    assert tracker.get_record(iid) is None
    assert len(tracker.history(iid)) == 1


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("backtest_results", {"sharpe": float("nan")}, "finite"),
        ("analysis", [float("inf")], "finite"),
        ("strategy", "x\x00y", "NUL"),
    ],
)
def test_unstorable_record_values_are_refused_and_nothing_is_written(
    any_store: str, open_tracker: Open, field: str, value: object, fragment: str
) -> None:
    """NaN, infinities and NUL in a record are a typed error naming the field; no record, no event."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    with pytest.raises(InvalidInputError, match=fragment) as caught:
        tracker.save_iteration({"id": iid, "agent_id": "agent-1", "iteration_number": 1, field: value})
    assert caught.value.field == f"record.{field}"
    assert tracker.get_record(iid) is None
    assert len(tracker.history(iid)) == 1


def test_deeply_nested_record_values_are_refused(open_tracker: Open) -> None:
    """JSON nested beyond 64 levels is refused with a typed error (not a RecursionError)."""
    deep: object = 1
    for _ in range(3000):
        deep = [deep]
    with pytest.raises(InvalidInputError, match=r"(?i)deeper than 64|recursion"):
        open_tracker("memory://").save_iteration({"agent_id": "a", "iteration_number": 1, "strategy": deep})
