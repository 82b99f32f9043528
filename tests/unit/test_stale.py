"""Durations for `--stale`, and `abandon --stale` when a host moves on after the listing (issue 12, item 5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fake_clock import FakeClock

from itertrack.adapters.cli.stale import abandon_stale, parse_duration
from itertrack.domain import InvalidInputError, PerformanceTracker, Status
from itertrack.domain.model.state import IterationState
from itertrack.projections.rows import CurrentPhase

HOURS_3 = 3 * 3_600_000


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (" 1.5H ", 5400), ("0.5s", 0.5)],
)
def test_durations_parse_to_their_length(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "30", "m", "2x", "1h1h", "-5m", "0s", "0h0m", "1 h", "h1", "3651d", "1e3s"])
def test_bad_durations_are_refused_naming_the_option(text: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        parse_duration(text, "--stale")
    assert (raised.value.field, raised.value.value) == ("--stale", text)


def _listed(state: IterationState) -> CurrentPhase:
    """The views' row of `state` as `status --stale` listed it."""
    return CurrentPhase(
        id=state.id,
        agent_id=state.agent_id,
        iteration_number=state.iteration_number,
        phase=state.phase,
        status=state.status,
        error=state.error,
        phase_entered_at=state.updated_at,
        started_at=state.started_at,
        finished_at=state.finished_at,
        updated_at=state.updated_at,
        last_version=state.version,
    )


@pytest.fixture
def idle_three_hours() -> tuple[PerformanceTracker, FakeClock, list[CurrentPhase]]:
    """Three iterations idle for 3 h, listed as stale."""
    clock = FakeClock()
    tracker = PerformanceTracker(store="memory://", clock=clock)
    ids = [tracker.start_iteration("agent-1", n) for n in (1, 2, 3)]
    clock.advance(HOURS_3)
    return tracker, clock, [_listed(tracker.get_iteration(i)) for i in ids]


def test_abandon_stale_skips_iterations_that_moved_on_since_the_listing(
    idle_three_hours: tuple[PerformanceTracker, FakeClock, list[CurrentPhase]],
) -> None:
    """Listed stale, then one finished and one changed by its host: only the third is abandoned."""
    tracker, _, listed = idle_three_hours
    finished, changed, idle = (row.id for row in listed)
    tracker.update_phase(finished, "completed")
    tracker.update_phase(changed, "analysis")

    abandoned, skipped = abandon_stale(tracker, listed, timedelta(hours=2))

    assert [row["iteration_id"] for row in abandoned] == [str(idle)]
    assert [row["iteration_id"] for row in skipped] == [str(finished), str(changed)]
    assert "finished since it was listed (completed)" in skipped[0]["reason"]
    assert "changed since it was listed" in skipped[1]["reason"]
    assert tracker.get_iteration(finished).status is Status.COMPLETED
    assert tracker.get_iteration(changed).status is Status.RUNNING
    assert tracker.get_iteration(idle).status is Status.FAILED


def test_a_host_finishing_between_the_check_and_the_write_wins(
    idle_three_hours: tuple[PerformanceTracker, FakeClock, list[CurrentPhase]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The iteration completes right after abandon read it: abandon skips it; the host's ending stands."""
    tracker, _, listed = idle_three_hours
    raced = listed[0].id
    read = tracker.get_iteration(raced)
    tracker.update_phase(raced, "completed")
    real = tracker.get_iteration
    monkeypatch.setattr(tracker, "get_iteration", lambda iid, **kw: read if iid == raced else real(iid, **kw))

    abandoned, skipped = abandon_stale(tracker, listed[:1], timedelta(hours=2))

    assert (abandoned, skipped) == ([], [{"iteration_id": str(raced), "reason": "finished by its host meanwhile"}])
    assert real(raced).status is Status.COMPLETED
