"""A store written before LLM calls were events (tests/fixtures/main_store.db, made by make_main_store.py with
main at 1c04cb6) still loads, replays, rebuilds its views (with the new `llm_calls` table) and verifies."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest
from support import assert_same_models, fold_models, view_models

from itertrack.adapters.views.keeper import ReadModels
from itertrack.adapters.views.verify import verify_store
from itertrack.domain import Iteration, PerformanceTracker, Status

Open = Callable[..., PerformanceTracker]
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "main_store.db"
COMPLETED = UUID("00000000-0000-4000-8000-000000000001")
RUNNING = UUID("00000000-0000-4000-8000-000000000002")

# What the fixture's script recorded (its clock: 250 ms of monotonic time per reading).
COMPLETED_METRICS = {
    "scan_generation_time_ms": 250.0,
    "scan_generation_tokens": 1140,
    "scan_generation_input_tokens": 100,
    "scan_generation_output_tokens": 40,
    "scan_generation_cache_read_input_tokens": 1000,
    "scan_generation_cache_creation_input_tokens": 0,
    "analysis_time_ms": 250.0,
    "analysis_tokens": 215 + 10 + 50,
    "analysis_input_tokens": 17,
    "analysis_output_tokens": 8,
    "analysis_cache_read_input_tokens": 0,
    "analysis_cache_creation_input_tokens": 200,
    "sharpe": 1.5,
}


@pytest.fixture
def old_store(tmp_path: Path) -> str:
    """A copy of the fixture (a test never changes the committed file)."""
    copy = tmp_path / "old.db"
    shutil.copyfile(FIXTURE, copy)
    with sqlite3.connect(copy) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "iteration_current" in tables  # the views of before, without llm_calls
    assert "llm_calls" not in tables
    return f"sqlite:///{copy}"


def test_an_old_store_loads_and_replays_as_it_was_written(old_store: str, open_tracker: Open) -> None:
    """State and history are those main wrote: record_usage's tokens as MetricsRecorded events."""
    tracker = open_tracker(old_store)
    state = tracker.get_iteration(COMPLETED)
    assert (state.status, state.saved, state.version) == (Status.COMPLETED, True, 11)
    assert state.metrics == COMPLETED_METRICS
    events = tracker.history(COMPLETED)
    assert [type(e).__name__ for e in events].count("MetricsRecorded") == 6
    assert not any(isinstance(e, Iteration.LLMCallRecorded) for e in events)
    assert tracker.get_iteration(COMPLETED, version=4).metrics["scan_generation_tokens"] == 1140


def test_an_old_store_rebuilds_its_views_with_the_new_table_and_verifies(old_store: str, open_tracker: Open) -> None:
    """Opening it creates llm_calls and rebuilds the views from the events; they equal a fold; verify is clean."""
    tracker = open_tracker(old_store)
    with ReadModels(tracker, background=False) as views:
        views.sync()
        assert views.llm_calls() == []
        assert {m.metric: m.total for m in views.metrics(COMPLETED)} == COMPLETED_METRICS
        assert_same_models(view_models(views.view), fold_models(tracker))
    report = verify_store(tracker)
    assert report.ok, report.problems


def test_new_calls_join_an_old_iteration_and_an_old_keyed_usage_retried_is_recognised(
    old_store: str, open_tracker: Open
) -> None:
    """A call recorded now adds to the tokens main recorded; verify counts both. A record_usage retried with
    the change_id it had before the upgrade is the same change (nothing written), not a reused key."""
    tracker = open_tracker(old_store)
    tracker.record_usage(RUNNING, "analysis", {"input_tokens": 4, "output_tokens": 6}, model="claude-haiku-4-5")
    assert tracker.get_iteration(RUNNING).metrics["analysis_tokens"] == 3 + 10
    before = len(tracker.history(COMPLETED))
    retried = tracker.record_usage(COMPLETED, "analysis", {"input_tokens": 7, "output_tokens": 3}, change_id="u-1")
    assert retried is not None
    assert retried.total == 10
    assert len(tracker.history(COMPLETED)) == before
    with ReadModels(tracker, background=False) as views:
        views.sync()
        (call,) = views.llm_calls()
        assert (call.iteration_id, call.model, call.total_tokens) == (RUNNING, "claude-haiku-4-5", 10)
    report = verify_store(tracker)
    assert report.ok, report.problems
