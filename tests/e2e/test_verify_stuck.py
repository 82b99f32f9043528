"""`itertrack verify` tells the truth about read models that are behind the log or cannot advance (issue 12, item 2).

The stuck views are made by hand: a trigger on a view table that calls a function SQLite does not have, so
every catch-up batch fails (the issue's own case, an overflowing total, no longer stops them: item 1).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from documents_support import payload

from itertrack.domain import PerformanceTracker

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


def verify(store: str, *args: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [ITERTRACK, "verify", "--store", store, "--json", *args], capture_output=True, text=True, check=False
    )
    return done.returncode, payload(done.stdout, "verify")


def test_views_that_cannot_advance_are_a_problem_naming_the_error_the_lag_and_since_when(tmp_path: Path) -> None:
    path = tmp_path / "itertrack.db"
    store = f"sqlite:///{path}"
    with PerformanceTracker(store=store, migrate=True) as tracker:
        for n in range(6):
            iid = tracker.start_iteration("agent-1", n)
            tracker.update_metrics(iid, {"analysis_time_ms": 5})
    with sqlite3.connect(path) as damaged:
        damaged.execute(
            "CREATE TRIGGER stop_the_views BEFORE INSERT ON iteration_metrics BEGIN SELECT no_such_function(); END"
        )
    code, report = verify(store)
    assert code == 1, report
    problems = report["problems"]
    assert isinstance(problems, list)
    assert problems[0]["check"] == "read_models_advance"
    assert "cannot advance past position" in problems[0]["detail"]
    assert "no such function: no_such_function" in problems[0]["detail"]
    assert report["read_models_behind"] == 12 - report["read_model_position"]  # type: ignore[operator]
    assert report["behind_since"] is not None


def test_without_catching_up_the_lag_is_reported_not_a_problem(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'itertrack.db'}"
    with PerformanceTracker(store=store, migrate=True) as tracker:
        iid = tracker.start_iteration("agent-1", 1)
        tracker.update_phase(iid, "analysis")
    code, report = verify(store, "--no-catch-up")
    assert code == 0, report
    assert (report["read_model_position"], report["read_models_behind"]) == (0, 2)
    assert report["behind_since"] is not None
    code, report = verify(store)  # caught up first: nothing behind
    assert code == 0, report
    assert (report["read_model_position"], report["read_models_behind"], report["behind_since"]) == (2, 0, None)
