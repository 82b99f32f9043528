"""Idempotency keys (`change_id=`) on every change method, against every store (issue 11, item 4).

A keyed change applied once is a no-op when retried (from this tracker or another one, whose copy of the
iteration may be stale); the same key with different content is refused with `ChangeIdReusedError` and
nothing is written; a key is scoped to its iteration; a malformed key is an `InvalidInputError`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from itertrack.domain import (
    ChangeIdReusedError,
    DuplicateIterationError,
    InvalidInputError,
    IterationFinishedError,
    PerformanceTracker,
)

Open = Callable[..., PerformanceTracker]


def versions(tracker: PerformanceTracker, iid: UUID) -> list[int]:
    return [e.originator_version for e in tracker.history(iid)]


def record(iid: UUID | None = None, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"agent_id": "agent-1", "iteration_number": 1, "iteration_status": "completed"}
    if iid is not None:
        fields["id"] = iid
    return fields | changes


def test_each_keyed_change_retried_is_applied_once(any_store: str, open_tracker: Open) -> None:
    """Every change method, called twice with the same key: the second call returns as the first did, and
    the history holds each change once."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1, change_id="start")
    assert tracker.start_iteration("agent-1", 1, change_id="start") == iid
    for _ in range(2):
        tracker.update_phase(iid, "analysis", change_id="enter-analysis")
        tracker.update_metrics(iid, {"analysis_tokens": 5}, change_id="tokens-1")
    usages = [tracker.record_usage(iid, "analysis", {"input_tokens": 3}, change_id="usage-1") for _ in range(2)]
    assert usages[0] == usages[1]
    saved = [tracker.save_iteration(record(iid), change_id="save") for _ in range(2)]
    assert saved == [iid, iid]
    assert versions(tracker, iid) == [1, 2, 3, 4, 5]
    state = tracker.get_iteration(iid)
    assert state.metrics["analysis_tokens"] == 5 + 3
    assert state.metrics["analysis_input_tokens"] == 3

    new = [tracker.save_iteration(record(iteration_number=2), change_id="save-new") for _ in range(2)]
    assert new[0] == new[1]
    assert versions(tracker, new[0]) == [1, 2]
    assert tracker.get_record(new[0]) is not None


def test_a_keyed_start_without_an_id_names_the_same_iteration_on_every_retry(
    any_store: str, open_tracker: Open
) -> None:
    """The id is derived from the key, so a retry after an unknown outcome cannot start a second iteration."""
    tracker = open_tracker(any_store)
    first = tracker.start_iteration("agent-1", 1, change_id="run-42")
    assert tracker.start_iteration("agent-1", 1, change_id="run-42") == first
    assert tracker.start_iteration("agent-1", 1, change_id="run-43") != first
    assert versions(tracker, first) == [1]


def test_a_retry_from_another_process_with_a_stale_copy_is_applied_once(durable_store: str, open_tracker: Open) -> None:
    """Host b cached the iteration before host a applied the keyed change: b's retry meets the stored change
    (its save loses the race, the re-load holds the key) and adds nothing."""
    host_a = open_tracker(durable_store)
    host_b = open_tracker(durable_store)
    iid = host_a.start_iteration("agent-1", 1)
    host_b.get_iteration(iid)  # b caches version 1
    host_a.update_metrics(iid, {"analysis_tokens": 5}, change_id="call-7")
    host_b.update_metrics(iid, {"analysis_tokens": 5}, change_id="call-7")
    host_b.update_phase(iid, "completed", change_id="done")
    host_a.update_phase(iid, "completed", change_id="done")  # a retry after the iteration finished: a no-op
    assert versions(host_a, iid) == [1, 2, 3]
    assert host_b.get_iteration(iid).metrics == {"analysis_tokens": 5}
    with pytest.raises(IterationFinishedError):  # a new change is still refused
        host_a.update_phase(iid, "completed", change_id="done-again")


@pytest.mark.parametrize(
    ("first", "reused"),
    [
        pytest.param(
            lambda t, iid: t.update_metrics(iid, {"analysis_tokens": 5}, change_id="k"),
            lambda t, iid: t.update_metrics(iid, {"analysis_tokens": 6}, change_id="k"),
            id="metrics",
        ),
        pytest.param(
            lambda t, iid: t.update_phase(iid, "analysis", change_id="k"),
            lambda t, iid: t.update_phase(iid, "scan_generation", change_id="k"),
            id="phase",
        ),
        pytest.param(
            lambda t, iid: t.update_phase(iid, "analysis", change_id="k"),
            lambda t, iid: t.update_metrics(iid, {"analysis_tokens": 1}, change_id="k"),
            id="another-method",
        ),
        pytest.param(
            lambda t, iid: t.save_iteration(record(iid), change_id="k"),
            lambda t, iid: t.save_iteration(record(iid, manual_guidance="other"), change_id="k"),
            id="save-record",
        ),
        pytest.param(
            lambda t, iid: t.save_iteration(record(), change_id="k"),
            lambda t, iid: t.save_iteration(record(iteration_status="failed"), change_id="k"),
            id="save-new",
        ),
        pytest.param(
            lambda t, iid: t.start_iteration("agent-1", 5, change_id="k"),
            lambda t, iid: t.start_iteration("agent-2", 5, change_id="k"),
            id="start",
        ),
    ],
)
def test_a_key_reused_for_a_different_change_is_refused_and_nothing_is_written(
    any_store: str,
    open_tracker: Open,
    first: Callable[[PerformanceTracker, UUID], object],
    reused: Callable[[PerformanceTracker, UUID], object],
) -> None:
    """The same change_id with other content raises `ChangeIdReusedError` naming change_id; nothing is stored."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    touched = first(tracker, iid)
    touched = touched if isinstance(touched, UUID) else iid
    before = versions(tracker, touched)
    with pytest.raises(ChangeIdReusedError) as raised:
        reused(tracker, iid)
    assert raised.value.field == "change_id"
    assert raised.value.value == "k"
    assert isinstance(raised.value, InvalidInputError)
    assert versions(tracker, touched) == before


def test_a_key_is_scoped_to_its_iteration(any_store: str, open_tracker: Open) -> None:
    """The same change_id on two iterations is two changes."""
    tracker = open_tracker(any_store)
    ids = [tracker.start_iteration("agent-1", n) for n in (1, 2)]
    for iid in ids:
        tracker.update_metrics(iid, {"analysis_tokens": 5}, change_id="step-1")
    assert [tracker.get_iteration(iid).metrics for iid in ids] == [{"analysis_tokens": 5}] * 2


def test_a_keyed_start_under_an_id_another_start_took_is_a_duplicate(any_store: str, open_tracker: Open) -> None:
    """A key does not make someone else's iteration this start's retry."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    with pytest.raises(DuplicateIterationError):
        tracker.start_iteration("agent-1", 1, iteration_id=iid, change_id="mine")


@pytest.mark.parametrize("bad", ["", "x" * 201, "two\nlines", "tab\there", 7, b"bytes", ["list"]])
def test_a_malformed_change_id_is_refused_naming_it_and_nothing_is_written(
    bad: object, open_tracker: Open, tmp_path: Path
) -> None:
    """A change_id must be a non-empty printable str of at most 200 characters."""
    tracker = open_tracker(f"sqlite:///{tmp_path / 'ids.db'}")
    iid = tracker.start_iteration("agent-1", 1)
    calls: list[Callable[[], object]] = [
        lambda: tracker.update_metrics(iid, {"analysis_tokens": 1}, change_id=bad),  # type: ignore[arg-type]
        lambda: tracker.update_phase(iid, "analysis", change_id=bad),  # type: ignore[arg-type]
        lambda: tracker.record_usage(iid, "analysis", {"input_tokens": 1}, change_id=bad),  # type: ignore[arg-type]
        lambda: tracker.save_iteration(record(iid), change_id=bad),  # type: ignore[arg-type]
        lambda: tracker.start_iteration("agent-1", 2, change_id=bad),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(InvalidInputError) as raised:
            call()
        assert raised.value.field == "change_id"
        assert raised.value.value == bad
    assert versions(tracker, iid) == [1]
    assert tracker.get_record(iid) is None


def test_the_longest_printable_change_id_is_accepted(open_tracker: Open, tmp_path: Path) -> None:
    tracker = open_tracker(f"sqlite:///{tmp_path / 'ids.db'}")
    iid = tracker.start_iteration("agent-1", 1)
    key = "é ü-" * 50  # 200 characters, spaces and non-ASCII letters are printable
    for _ in range(2):
        tracker.update_metrics(iid, {"analysis_tokens": 1}, change_id=key)
    assert versions(tracker, iid) == [1, 2]
