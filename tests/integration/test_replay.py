"""Audit replay: an iteration's state as of a version or an instant, against hand-computed states."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from documents_support import payload
from fake_clock import FakeClock

from itertrack.domain import InvalidInputError, PerformanceTracker, Status

Open = Callable[..., PerformanceTracker]
START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def ms(n: float) -> datetime:
    return START + timedelta(milliseconds=n)


def scripted(tracker: PerformanceTracker, clock: FakeClock) -> UUID:
    """v1 start @0 ms, v2 scan_generation @100, v3 +500 tokens @300, v4 backtest @400, v5+v6 metrics, failed @2400."""
    clock.at(0)
    iid = tracker.start_iteration("agent-1", 3)
    clock.at(100)
    tracker.update_phase(iid, "scan_generation")
    clock.at(300)
    tracker.update_metrics(iid, {"scan_generation_tokens": 500})
    clock.at(400)
    tracker.update_phase(iid, "backtest_execution")
    clock.at(2400)
    tracker.update_metrics(iid, {"backtest_execution_time_ms": 800})
    tracker.update_phase(iid, "failed", error="timeout")
    return iid


@pytest.fixture
def replayed(any_store: str, open_tracker: Open) -> tuple[PerformanceTracker, UUID]:
    clock = FakeClock(step_ms=0)
    tracker = open_tracker(any_store, clock=clock)
    return tracker, scripted(tracker, clock)


@pytest.mark.parametrize(
    ("version", "phase", "metrics", "status"),
    [
        (1, "initializing", {}, Status.RUNNING),
        (2, "scan_generation", {}, Status.RUNNING),
        (3, "scan_generation", {"scan_generation_tokens": 500}, Status.RUNNING),
        (4, "backtest_execution", {"scan_generation_tokens": 500}, Status.RUNNING),
        (5, "backtest_execution", {"scan_generation_tokens": 500, "backtest_execution_time_ms": 800}, Status.RUNNING),
        (6, "failed", {"scan_generation_tokens": 500, "backtest_execution_time_ms": 800}, Status.FAILED),
    ],
)
def test_state_as_of_each_version(
    replayed: tuple[PerformanceTracker, UUID], version: int, phase: str, metrics: dict[str, int], status: Status
) -> None:
    """Each version's state has the phase, totals and status the events up to it give."""
    tracker, iid = replayed
    state = tracker.get_iteration(iid, version=version)
    assert (state.version, state.phase, state.metrics, state.status) == (version, phase, metrics, status)
    assert len(state.phase_history) == {1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4}[version]


@pytest.mark.parametrize(
    ("instant", "version"),
    [
        (ms(0), 1),  # exactly at the first event
        (ms(99.999), 1),  # just before the second
        (ms(100), 2),  # exactly at an event
        (ms(350), 3),  # between two events
        (ms(400), 4),
        (ms(2399), 4),
        (ms(2400), 6),  # two events share this instant: the last of them
        (ms(10**7), 6),  # long after the end
    ],
)
def test_state_as_of_an_instant_is_the_last_version_at_or_before_it(
    replayed: tuple[PerformanceTracker, UUID], instant: datetime, version: int
) -> None:
    """The state at an instant is the state of the last version whose timestamp is at or before it."""
    tracker, iid = replayed
    assert tracker.version_at(iid, instant) == version
    assert tracker.get_iteration(iid, at=instant) == tracker.get_iteration(iid, version=version)
    in_tokyo = instant.astimezone(ZoneInfo("Asia/Tokyo"))
    assert tracker.version_at(iid, in_tokyo) == version


def test_bad_replay_requests_are_refused(replayed: tuple[PerformanceTracker, UUID]) -> None:
    """Before the start, beyond the last version, naive instants and both at once are typed errors."""
    tracker, iid = replayed
    with pytest.raises(InvalidInputError, match="is before the iteration began"):
        tracker.get_iteration(iid, at=ms(-1))
    with pytest.raises(InvalidInputError, match="version=7: is beyond the iteration's last version 6"):
        tracker.get_iteration(iid, version=7)
    with pytest.raises(InvalidInputError, match="version=0"):
        tracker.get_iteration(iid, version=0)
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        tracker.get_iteration(iid, at=datetime(2026, 1, 2, 3, 4, 6))
    with pytest.raises(InvalidInputError, match="either version or at"):
        tracker.get_iteration(iid, version=1, at=ms(0))


def test_replay_command_answers_what_was_it_doing_and_what_had_it_cost(tmp_path: Path) -> None:
    """`itertrack replay ID --at T --json` gives the phase then and the tokens and time so far."""
    store = f"sqlite:///{tmp_path / 'r.db'}"
    clock = FakeClock(step_ms=0)
    with PerformanceTracker(store=store, clock=clock) as tracker:
        iid = scripted(tracker, clock)
    command = [str(Path(sys.executable).with_name("itertrack")), "replay", str(iid), "--store", store, "--json"]
    result = subprocess.run([*command, "--at", ms(2000).isoformat()], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    data = payload(result.stdout, "replay")
    assert data["as_of"]["version"] == 4
    assert data["iteration"]["phase"] == "backtest_execution"
    assert data["so_far"] == {"tokens": 500, "time_ms": 0}
    assert [e["version"] for e in data["events"]] == [1, 2, 3, 4]
    naive = subprocess.run([*command, "--at", "2026-01-02T03:04:05.350"], capture_output=True, text=True, check=False)
    assert payload(naive.stdout, "replay")["as_of"]["version"] == 3  # no offset: UTC
    bad = subprocess.run([*command, "--at", "teatime"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "at='teatime': is not an ISO-8601 timestamp" in bad.stderr
