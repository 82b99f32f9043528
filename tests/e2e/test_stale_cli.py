"""`itertrack status --stale` and `itertrack abandon` as a user runs them, on a real SQLite file (issue 12, item 5).

The iterations are written in-process by trackers whose fake clocks stand hours in the past (their events carry
those timestamps); the commands run as processes on the system clock.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from documents_support import payload
from fake_clock import FakeClock

from itertrack.domain import PerformanceTracker, Status

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ITERTRACK, *args], capture_output=True, text=True, timeout=120, check=False)


class Hosts:
    """A SQLite store holding iterations written `hours_ago` hours before now."""

    def __init__(self, path: Path) -> None:
        self.store = f"sqlite:///{path}"
        self.seed = 0
        PerformanceTracker(store=self.store, migrate=True).close()

    def tracker(self, hours_ago: float) -> PerformanceTracker:
        start = datetime.now(UTC) - timedelta(hours=hours_ago)
        self.seed += 1  # each tracker its own ids
        return PerformanceTracker(store=self.store, clock=FakeClock(start, seed=self.seed))

    def running(self, hours_ago: float, number: int, phase: str = "backtest_execution", agent: str = "agent-1") -> UUID:
        with self.tracker(hours_ago) as tracker:
            iid = tracker.start_iteration(agent, number)
            tracker.update_phase(iid, phase)
            return iid

    def completed(self, hours_ago: float, number: int) -> UUID:
        with self.tracker(hours_ago) as tracker:
            iid = tracker.start_iteration("agent-1", number)
            tracker.update_phase(iid, "completed")
            return iid

    def state(self, iid: UUID) -> dict[str, object]:
        with PerformanceTracker(store=self.store) as tracker:
            state = tracker.get_iteration(iid)
            return {"status": state.status, "error": state.error, "version": state.version, "updated": state.updated_at}


@pytest.fixture
def hosts(tmp_path: Path) -> Hosts:
    return Hosts(tmp_path / "hosts.db")


def test_status_stale_lists_only_running_iterations_idle_that_long(hosts: Hosts) -> None:
    """Running and idle 3 h: listed by --stale 2h; running and idle 1 h, or finished 3 h ago: not listed."""
    old = hosts.running(3, 1)
    recent = hosts.running(1, 2)
    hosts.completed(3, 3)

    listed = run("status", "--stale", "2h", "--store", hosts.store, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["iteration_id"] for row in payload(listed.stdout, "status")["iterations"]] == [str(old)]

    wider = run("status", "--stale", "30m", "--store", hosts.store, "--json")
    assert wider.returncode == 0, wider.stderr
    assert {row["iteration_id"] for row in payload(wider.stdout, "status")["iterations"]} == {str(old), str(recent)}

    table = run("status", "--stale", "90m", "--store", hosts.store)
    assert table.returncode == 0, table.stderr
    assert "Iterations (1 shown)" in table.stdout


@pytest.mark.parametrize("bad", ["2x", "30", "0m", "1h1h", "-5m", ""])
def test_a_bad_duration_is_a_typed_error_naming_the_option(hosts: Hosts, bad: str) -> None:
    """A duration that does not parse: one line naming --stale and the value, exit 2 (usage), nothing written."""
    old = hosts.running(3, 1)
    before = hosts.state(old)
    for command in ("status", "abandon"):
        result = run(command, f"--stale={bad}", "--store", hosts.store)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr.startswith(f"itertrack: error: --stale={bad!r}"), result.stderr
    assert hosts.state(old) == before


def test_abandon_stale_fails_idle_iterations_with_an_event_saying_who_and_since_when(hosts: Hosts) -> None:
    """abandon --stale 2h: the iteration idle 3 h fails, its error names the command and its last change;
    the one idle 1 h stays running; history shows the abandoning event."""
    old = hosts.running(3, 1)
    recent = hosts.running(1, 2)
    since = hosts.state(old)["updated"]
    assert isinstance(since, datetime)

    result = run("abandon", "--stale", "2h", "--store", hosts.store, "--json")
    assert result.returncode == 0, result.stderr
    output = payload(result.stdout, "abandon")
    expected_error = f"abandoned by itertrack abandon: no change since {since.isoformat()}"
    assert [(row["iteration_id"], row["error"]) for row in output["abandoned"]] == [(str(old), expected_error)]
    assert output["skipped"] == []

    assert hosts.state(old)["status"] is Status.FAILED
    assert hosts.state(old)["error"] == expected_error
    assert hosts.state(recent)["status"] is Status.RUNNING
    history = run("history", str(old), "--store", hosts.store, "--json")
    last = payload(history.stdout, "history")["events"][-1]
    assert (last["event"], last["data"]["phase"], last["data"]["error"]) == ("PhaseChanged", "failed", expected_error)

    again = run("abandon", "--stale", "2h", "--store", hosts.store)
    assert again.returncode == 0, again.stderr
    assert "no running iteration without a change for 2h" in again.stdout


def test_abandon_by_id_ends_a_running_iteration(hosts: Hosts) -> None:
    """abandon ID ends that iteration however recently it changed; the text output names it."""
    recent = hosts.running(0.1, 1)
    result = run("abandon", str(recent), "--store", hosts.store)
    assert result.returncode == 0, result.stderr
    assert f"abandoned {recent}" in result.stdout
    state = hosts.state(recent)
    assert state["status"] is Status.FAILED
    assert str(state["error"]).startswith("abandoned by itertrack abandon: no change since ")


def test_abandon_of_a_finished_iteration_is_refused_and_writes_nothing(hosts: Hosts) -> None:
    """Among the ids, a finished one: a typed error naming it, exit 1, and the running one is left as it was."""
    running = hosts.running(3, 1)
    finished = hosts.completed(3, 2)
    before = (hosts.state(running), hosts.state(finished))

    result = run("abandon", str(running), str(finished), "--store", hosts.store)
    assert result.returncode == 1
    assert str(finished) in result.stderr
    assert "completed" in result.stderr
    assert (hosts.state(running), hosts.state(finished)) == before


def test_abandon_needs_ids_or_stale_but_not_both(hosts: Hosts) -> None:
    """Neither, or both: a typed error, exit 2 (usage)."""
    running = hosts.running(3, 1)
    neither = run("abandon", "--store", hosts.store)
    both = run("abandon", str(running), "--stale", "1h", "--store", hosts.store)
    assert (neither.returncode, both.returncode) == (2, 2)
    assert "iteration ids" in neither.stderr
    assert "--stale='1h'" in both.stderr
    assert hosts.state(running)["status"] is Status.RUNNING


def test_abandon_stale_takes_agent_since_and_until_like_status(hosts: Hosts) -> None:
    """`abandon --stale` narrowed by --agent and by a start-time range ends only the iterations `status --stale`
    lists with the same options; those options without --stale are a usage error naming the option."""
    mine_old = hosts.running(5, 1, agent="agent-a")
    mine = hosts.running(3, 2, agent="agent-a")
    theirs = hosts.running(3, 3, agent="agent-b")
    cut = (datetime.now(UTC) - timedelta(hours=4)).isoformat()
    listed = run("status", "--stale", "2h", "--agent", "agent-a", "--since", cut, "--store", hosts.store, "--json")
    assert [row["iteration_id"] for row in payload(listed.stdout, "status")["iterations"]] == [str(mine)]
    result = run("abandon", "--stale", "2h", "--agent", "agent-a", "--since", cut, "--store", hosts.store, "--json")
    assert result.returncode == 0, result.stderr
    assert [row["iteration_id"] for row in payload(result.stdout, "abandon")["abandoned"]] == [str(mine)]
    assert [hosts.state(i)["status"] for i in (mine_old, mine, theirs)] == [
        Status.RUNNING,
        Status.FAILED,
        Status.RUNNING,
    ]
    until = run("abandon", "--stale", "2h", "--until", cut, "--store", hosts.store, "--json")
    assert [row["iteration_id"] for row in payload(until.stdout, "abandon")["abandoned"]] == [str(mine_old)]
    without = run("abandon", str(theirs), "--agent", "agent-b", "--store", hosts.store)
    assert without.returncode == 2
    assert "--agent='agent-b': selects among stale iterations: give it with --stale" in without.stderr
    assert hosts.state(theirs)["status"] is Status.RUNNING
