"""The views' one catch-up mechanism (the library's runner): one-shot, in batches, restarts, and the keeper thread."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from support import assert_same_models, fold_models, view_models, wait_for

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import ReadModels, view_for
from itertrack.adapters.views.runner import ViewRunner, catch_up
from itertrack.domain import PerformanceTracker
from itertrack.domain.model.errors import StoreUnavailableError
from itertrack.domain.model.iteration import Iteration
from itertrack.projections.projection import PositionConflictError

Open = Callable[..., PerformanceTracker]


def write(tracker: PerformanceTracker, iterations: int) -> None:
    """Four events per iteration."""
    for n in range(iterations):
        iid = tracker.start_iteration(f"agent-{n % 3}", n)
        tracker.update_phase(iid, "scan_generation")
        tracker.update_metrics(iid, {"scan_generation_tokens": n})
        tracker.update_phase(iid, "completed")


def test_one_shot_catch_up_applies_the_log_in_batches_and_leaves_the_tracker_open(
    durable_store: str, open_tracker: Open
) -> None:
    """`catch_up` applies every event once, in batches of at most `batch_size`, returns the count, and stops."""
    tracker = open_tracker(durable_store)
    write(tracker, 30)
    view = view_for(store_of(tracker).factory)
    batches: list[int] = []
    applied = catch_up(tracker, view, batch_size=16, on_batch=batches.append)
    assert applied == sum(batches) == 120 == view.position()
    assert max(batches) <= 16
    assert len(batches) <= 2 * (120 // 16 + 1), "events are applied many per transaction"
    assert catch_up(tracker, view) == 0
    write(tracker, 1)  # the runner stopped without closing the tracker
    assert catch_up(tracker, view) == 4
    assert_same_models(view_models(view), fold_models(tracker))


def test_one_shot_catch_up_stops_at_the_log_as_of_the_call(durable_store: str, open_tracker: Open) -> None:
    """Events written while a catch-up runs may be applied or not, but the catch-up returns regardless."""
    tracker = open_tracker(durable_store)
    write(tracker, 10)
    view = view_for(store_of(tracker).factory)
    target = store_of(tracker).recorder.max_notification_id() or 0
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            write(tracker, 1)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        catch_up(tracker, view, batch_size=3)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert view.position() >= target
    catch_up(tracker, view)
    assert_same_models(view_models(view), fold_models(tracker))


def test_views_emptied_under_a_catch_up_are_rebuilt_from_zero(durable_store: str, open_tracker: Open) -> None:
    """A rebuild elsewhere mid catch-up (the position goes back) makes it start again from the new position."""
    tracker = open_tracker(durable_store)
    write(tracker, 25)
    view, elsewhere = view_for(store_of(tracker).factory), view_for(store_of(tracker).factory)
    resets: list[int] = []

    def reset_once(_applied: int) -> None:
        if not resets:
            resets.append(view.position())
            elsewhere.reset()

    catch_up(tracker, view, batch_size=10, on_batch=reset_once)
    assert len(resets) == 1
    assert resets[0] > 0
    assert view.position() == store_of(tracker).recorder.max_notification_id()
    assert_same_models(view_models(view), fold_models(tracker))


def test_a_runner_waits_for_new_events_until_stopped(durable_store: str, open_tracker: Open) -> None:
    """A running `ViewRunner` applies events written after it started; `wait_until` returns once they are in."""
    tracker = open_tracker(durable_store)
    view = view_for(store_of(tracker).factory)
    with ViewRunner(tracker, view, batch_size=50) as runner:
        write(tracker, 5)
        target = store_of(tracker).recorder.max_notification_id() or 0
        assert runner.wait_until(target, timeout=30)
        assert view.position() == target
    assert runner.is_interrupted.is_set()
    assert_same_models(view_models(view), fold_models(tracker))


def test_the_keeper_thread_keeps_the_views_current_without_queries(durable_store: str, open_tracker: Open) -> None:
    """With `ReadModels(tracker)` open, the views reach the log's end with no query asking."""
    tracker = open_tracker(durable_store)
    with ReadModels(tracker) as views:
        write(tracker, 5)
        target = store_of(tracker).recorder.max_notification_id() or 0
        wait_for(lambda: views.view.position() == target, timeout=30, what="the keeper to apply every event")


def test_the_keeper_logs_an_outage_and_starts_again(
    durable_store: str, open_tracker: Open, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that meets an outage stops the runner; the keeper logs one warning, and after its back-off a new
    runner applies the events and the keeper says the store is back."""
    tracker = open_tracker(durable_store)
    with ReadModels(tracker) as views:
        real_apply = views.view.apply
        failures: list[int] = []

        def fail_once(events: Sequence[Iteration.Event], expected: int, new: int) -> int:
            if not failures:
                failures.append(1)
                raise StoreUnavailableError("store is unavailable: boom")
            return real_apply(events, expected, new)

        monkeypatch.setattr(views.view, "apply", fail_once)
        with caplog.at_level(logging.INFO, logger="itertrack"):
            write(tracker, 3)
            target = store_of(tracker).recorder.max_notification_id() or 0
            wait_for(lambda: views.view.position() == target, timeout=30, what="a new runner to apply the events")
            wait_for(lambda: "the store is back" in caplog.text, timeout=30, what="the keeper to say it is back")
        assert failures == [1]
        assert caplog.text.count("read models: lost the store: store is unavailable: boom; retrying in") == 1
        assert_same_models(view_models(views.view), fold_models(tracker))


def test_the_keeper_stops_on_an_error_waiting_cannot_fix_and_queries_raise_it(
    durable_store: str, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error no outage explains (here a bug in a batch) is not retried at the same position for ever: the
    keeper stops, and every query that needs the views to catch up raises it."""
    tracker = open_tracker(durable_store)
    with ReadModels(tracker) as views:
        calls: list[int] = []

        def boom(events: Sequence[Iteration.Event], expected: int, new: int) -> int:
            calls.append(new)
            raise RuntimeError("boom")

        monkeypatch.setattr(views.view, "apply", boom)
        write(tracker, 1)
        with pytest.raises(RuntimeError, match="boom"):
            views.sync()
        keeper = views._thread  # noqa: SLF001  # the keeper's thread: it ends, rather than retrying
        assert keeper is not None
        wait_for(lambda: not keeper.is_alive(), timeout=30, what="the keeper to stop")
        with pytest.raises(RuntimeError, match="boom"):
            views.iterations()
        assert len(calls) == 1, "tried once, not again and again at the same position"


def test_a_constraint_a_view_row_breaks_is_raised_not_retried_as_a_position_conflict(tmp_path: Path) -> None:
    """Only the tracking row's key clash is a position conflict (issue 12, item 3): any other constraint
    error was read as one, and a catch-up retried it at the same position for ever."""
    path = tmp_path / "itertrack.db"
    with PerformanceTracker(store=f"sqlite:///{path}", migrate=True) as tracker:
        iid = tracker.start_iteration("agent-1", 1)
        tracker.update_metrics(iid, {"analysis_tokens": 3})
        with sqlite3.connect(path) as hand:
            hand.execute(
                "CREATE TRIGGER refuse_metrics BEFORE INSERT ON iteration_metrics "
                "BEGIN SELECT RAISE(ABORT, 'refused by a hand-made trigger'); END"
            )
        raised: list[BaseException] = []

        def run() -> None:
            try:
                catch_up(tracker, view_for(store_of(tracker).factory))
            except BaseException as e:  # the test looks at whatever ended the catch-up
                raised.append(e)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(30)
        assert not worker.is_alive(), "the catch-up retried the broken constraint for ever"
        assert len(raised) == 1
        assert not isinstance(raised[0], PositionConflictError)
        assert "refused by a hand-made trigger" in str(raised[0])
        assert view_for(store_of(tracker).factory).position() == 0  # nothing of the batch was written
