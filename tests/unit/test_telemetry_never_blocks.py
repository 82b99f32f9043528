"""Telemetry never blocks the state change it describes; unusable input is a typed error and writes nothing.

Issue 12, item 6: an over-long or unstorable error text is still recorded (cut, escaped, with a marker); a record
holding an integer no JSON reader takes back, and a clock returning a naive datetime, are typed errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from uuid import UUID

import pytest
from fake_clock import FakeClock

from itertrack.domain import (
    InvalidInputError,
    InvalidMetricError,
    IterationNotFoundError,
    IterationRecord,
    PerformanceTracker,
)
from itertrack.domain.model.text import MAX_ERROR_MESSAGE, check_error_message, error_message_of

STDERR = "E" * 8_660  # a compiler's stderr, far past the limit
ID = UUID("5b7c2a0e-0000-4000-8000-0000000000aa")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tracker(clock: FakeClock) -> Iterator[PerformanceTracker]:
    with PerformanceTracker(store="memory://", clock=clock) as t:
        yield t


# -- the error text of a failure ------------------------------------------------------------------------------


def test_an_over_long_error_is_cut_to_the_limit_with_its_original_length() -> None:
    """The stored text keeps the start of the message and ends in a marker saying how long it was."""
    stored = check_error_message(STDERR)
    assert len(stored) == MAX_ERROR_MESSAGE
    assert stored.startswith("E" * 3_900)
    assert stored.endswith("[cut to 4,000 of 8,660 characters]")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("a\x00b", "a\\x00b"),  # PostgreSQL text cannot hold NUL
        ("bad \ud800 byte", "bad \\ud800 byte"),  # a lone surrogate is not UTF-8
        ("", "(empty error message)"),  # an empty stderr
        (" \n\t", "(empty error message)"),
        ("line 1\nline 2\x1b[0m", "line 1\nline 2\x1b[0m"),  # other control characters are kept as given
    ],
)
def test_unstorable_error_text_is_made_storable_not_refused(given: str, expected: str) -> None:
    assert check_error_message(given) == expected


def test_making_an_error_storable_twice_changes_nothing() -> None:
    """A change retried (or forwarded from a spool) is checked again: the second check must keep it as is."""
    for given in (STDERR, "a\x00b" * 2_000, "\ud800" * 1_500, "", "ok"):
        once = check_error_message(given)
        assert check_error_message(once) == once


def test_a_non_string_error_is_still_refused() -> None:
    with pytest.raises(InvalidInputError, match="error=42: must be a string"):
        check_error_message(42)


def test_an_exception_with_a_long_message_is_summarised_with_its_length() -> None:
    assert error_message_of(RuntimeError(STDERR)).endswith("of 8,660 characters]")


def test_a_failure_with_an_8660_character_stderr_is_recorded(tracker: PerformanceTracker) -> None:
    """`update_phase(id, "failed", error=<8,660 characters>)` ends the iteration failed (it raised before)."""
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_phase(iid, "failed", error=STDERR)
    state = tracker.get_iteration(iid)
    assert state.phase == "failed"
    assert state.error is not None
    assert len(state.error) == MAX_ERROR_MESSAGE
    assert "8,660" in state.error


def test_a_keyed_retry_of_a_long_failure_is_recognised(tracker: PerformanceTracker) -> None:
    """The cut text is what the change says, so a retry with the same key and text is the same change."""
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_phase(iid, "failed", error=STDERR, change_id="fail-1")
    tracker.update_phase(iid, "failed", error=STDERR, change_id="fail-1")
    assert len(tracker.history(iid)) == 2


# -- integers no JSON reader takes back -----------------------------------------------------------------------


def test_a_record_with_an_int_past_4300_digits_is_a_typed_error_naming_its_path() -> None:
    with pytest.raises(InvalidInputError) as caught:
        IterationRecord.parse({"agent_id": "a", "iteration_number": 1, "strategy": {"params": [1, 10**4300]}})
    assert caught.value.field == "record.strategy"
    message = str(caught.value)
    assert "record.strategy.params[1]" in message
    assert "4,301 digits" in message
    assert len(message) < 300  # the value is shown shortened


def test_a_record_with_a_4300_digit_int_round_trips_through_json() -> None:
    """The limit is the readers' own: the largest int accepted is read back from the record's JSON (a spool)."""
    largest = 10**4300 - 1
    record = IterationRecord.parse({"agent_id": "a", "iteration_number": 1, "analysis": [-largest, largest]})
    assert IterationRecord.model_validate_json(record.model_dump_json()) == record


def test_saving_a_record_with_a_huge_int_writes_nothing(tracker: PerformanceTracker) -> None:
    iid = tracker.start_iteration("agent-1", 1)
    with pytest.raises(InvalidInputError, match=r"record\.analysis"):
        tracker.save_iteration({"id": iid, "agent_id": "agent-1", "iteration_number": 1, "analysis": -(10**5000)})
    assert tracker.get_record(iid) is None
    assert len(tracker.history(iid)) == 1


def test_a_huge_metric_amount_is_a_typed_error_not_a_raw_valueerror(tracker: PerformanceTracker) -> None:
    """Showing the value in the message must not itself fail on Python's int-to-str limit."""
    iid = tracker.start_iteration("agent-1", 1)
    with pytest.raises(InvalidMetricError, match="too long to show"):
        tracker.update_metrics(iid, {"analysis_tokens": 10**5000})
    assert len(tracker.history(iid)) == 1


# -- a clock that returns a naive datetime --------------------------------------------------------------------


class NaiveAfter(FakeClock):
    """A fake clock whose `now()` drops the timezone once `naive` is set (a host's `datetime.now()`)."""

    naive = False

    def now(self) -> datetime:
        now = super().now()
        return now.replace(tzinfo=None) if self.naive else now


@pytest.fixture
def naive_clock() -> NaiveAfter:
    return NaiveAfter()


@pytest.fixture
def naive_tracker(naive_clock: NaiveAfter) -> Iterator[PerformanceTracker]:
    with PerformanceTracker(store="memory://", clock=naive_clock) as t:
        yield t


def test_starting_with_a_naive_clock_is_a_typed_error_naming_the_clock(
    naive_tracker: PerformanceTracker, naive_clock: NaiveAfter
) -> None:
    naive_clock.naive = True
    with pytest.raises(InvalidInputError, match=r"clock=datetime\.datetime\(2026.*timezone-aware") as caught:
        naive_tracker.start_iteration("agent-1", 1, iteration_id=ID)
    assert caught.value.field == "clock"
    with pytest.raises(IterationNotFoundError):
        naive_tracker.get_iteration(ID)


def test_changing_with_a_naive_clock_is_a_typed_error_and_writes_nothing(
    naive_tracker: PerformanceTracker, naive_clock: NaiveAfter
) -> None:
    iid = naive_tracker.start_iteration("agent-1", 1)
    naive_clock.naive = True
    with pytest.raises(InvalidInputError, match="clock="):
        naive_tracker.update_phase(iid, "analysis")
    with pytest.raises(InvalidInputError, match="clock="):
        naive_tracker.update_metrics(iid, {"analysis_tokens": 1})
    with pytest.raises(InvalidInputError, match="clock="):
        naive_tracker.save_iteration({"id": iid, "agent_id": "agent-1", "iteration_number": 1})
    assert len(naive_tracker.history(iid)) == 1
    assert naive_tracker.get_record(iid) is None
    naive_clock.naive = False  # the tracker is still usable once the clock is fixed
    naive_tracker.update_phase(iid, "analysis")
    assert naive_tracker.get_iteration(iid).phase == "analysis"


def test_saving_a_new_record_with_a_naive_clock_writes_nothing(
    naive_tracker: PerformanceTracker, naive_clock: NaiveAfter
) -> None:
    naive_clock.naive = True
    with pytest.raises(InvalidInputError, match="clock="):
        naive_tracker.save_iteration({"agent_id": "agent-1", "iteration_number": 1}, change_id="save-1")
    naive_clock.naive = False
    new_id = naive_tracker.save_iteration({"agent_id": "agent-1", "iteration_number": 1}, change_id="save-1")
    assert len(naive_tracker.history(new_id)) == 2  # started and saved once, by the second call only
