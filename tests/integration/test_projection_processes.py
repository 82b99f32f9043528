"""The projection as separate processes: SIGKILL mid catch-up, follow mode beside a writer, rebuild while writing."""

from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest
from support import assert_same_models, fold_models, view_models, wait_for
from workers import paced_writer_worker

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import view_for
from itertrack.adapters.views.tables import ViewTables
from itertrack.domain import Iteration, PerformanceTracker

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
Open = Callable[..., PerformanceTracker]

pytestmark = pytest.mark.slow


def itertrack(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ITERTRACK, *args], capture_output=True, text=True, timeout=timeout, check=False)


def seed_history(tracker: PerformanceTracker, iterations: int) -> None:
    """Write `iterations` five-event iterations quickly (100 aggregates per save)."""
    clock = tracker.clock
    for start in range(0, iterations, 100):
        batch = []
        for n in range(start, min(start + 100, iterations)):
            it = Iteration.start(clock.new_id(), f"agent-{n % 5}", n, clock.now())
            it.change_phase("scan_generation", None, clock.now())
            it.record_metrics({"scan_generation_tokens": n, "scan_generation_time_ms": 1.25}, clock.now())
            it.change_phase("backtest_execution", None, clock.now())
            if n % 7 == 0:
                it.change_phase("failed", f"error {n % 3}", clock.now())
            else:
                it.change_phase("completed", None, clock.now())
            batch.append(it)
        store_of(tracker).app.save(*batch)


@pytest.fixture
def store_and_view(durable_store: str, open_tracker: Open) -> tuple[str, PerformanceTracker, ViewTables]:
    tracker = open_tracker(durable_store)
    return durable_store, tracker, view_for(store_of(tracker).factory)


def test_sigkill_mid_catch_up_then_restart_equals_a_clean_rebuild(
    store_and_view: tuple[str, PerformanceTracker, ViewTables],
) -> None:
    """Killing `project` with SIGKILL part-way and running it again leaves the views equal to a rebuild from zero."""
    store, tracker, view = store_and_view
    seed_history(tracker, 1200)
    latest = store_of(tracker).recorder.max_notification_id() or 0
    proc = subprocess.Popen([ITERTRACK, "project", "--store", store, "--batch-size", "5"])
    try:
        wait_for(lambda: view.position() > 0, timeout=300, what="the projection's first batch")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    killed_at = view.position()
    assert 0 < killed_at < latest, "the kill must land in the middle of the catch-up"
    restarted = itertrack("project", "--store", store, "--wait")
    assert restarted.returncode == 0, restarted.stderr
    assert view.position() == latest
    after_crash = view_models(view)
    rebuilt = itertrack("project", "--store", store, "--rebuild", "--wait")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert_same_models(view_models(view), after_crash)
    assert_same_models(after_crash, fold_models(tracker))


def test_follow_mode_shows_every_iteration_a_writer_process_writes(
    store_and_view: tuple[str, PerformanceTracker, ViewTables], record_property: Callable[[str, object], None]
) -> None:
    """A writer process and `project --follow` run together: every iteration appears, completed, in the view."""
    store, tracker, view = store_and_view
    follower = subprocess.Popen(
        [ITERTRACK, "project", "--follow", "--store", store], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout = follower.stdout
        assert stdout is not None
        wait_for(lambda: "following" in stdout.readline(), 300, "follow mode")
        ctx = multiprocessing.get_context("spawn")
        stop, results = ctx.Event(), ctx.Queue()
        writer = ctx.Process(target=paced_writer_worker, args=(store, 60, 0.01, stop, results))
        writer.start()
        appended: dict[UUID, float] = {}
        visible: dict[UUID, float] = {}

        def all_visible() -> bool:
            while not results.empty():
                item = results.get()
                if item is not None:
                    appended[UUID(item[0])] = item[1]
            now = time.time()
            for row in view.iterations(status="completed", limit=10_000):
                visible.setdefault(row.id, now)
            return len(appended) == 60 and appended.keys() <= visible.keys()

        wait_for(all_visible, timeout=600, what="every written iteration to show up completed", interval=0.001)
        writer.join(timeout=300)
        assert writer.exitcode == 0
        latencies = sorted((visible[i] - appended[i]) * 1000 for i in appended)
        record_property("append_to_visible_ms_p50", round(statistics.median(latencies), 2))
        record_property("append_to_visible_ms_max", round(latencies[-1], 2))
        print(f"append to visible (ms): p50 {statistics.median(latencies):.1f}, max {latencies[-1]:.1f}")
        assert_same_models(view_models(view), fold_models(tracker))
    finally:
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert "stopped" in out


def test_rebuild_while_a_writer_keeps_writing(
    store_and_view: tuple[str, PerformanceTracker, ViewTables], record_property: Callable[[str, object], None]
) -> None:
    """`project --rebuild` run during writes, then one catch-up, gives views equal to a fold of the full history."""
    store, tracker, view = store_and_view
    seed_history(tracker, 300)
    ctx = multiprocessing.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    writer = ctx.Process(target=paced_writer_worker, args=(store, 100_000, 0.01, stop, results))
    writer.start()
    try:
        # The writer is writing before the rebuild starts and is stopped only after it ended, so the
        # rebuild runs inside the writer's life however the machine schedules the two.
        wait_for(lambda: not results.empty(), timeout=300, what="the writer's first iteration")
        before = store_of(tracker).recorder.max_notification_id() or 0
        rebuilt = itertrack("project", "--store", store, "--rebuild")
        during = store_of(tracker).recorder.max_notification_id() or 0
    finally:
        stop.set()
    while results.get(timeout=300) is not None:  # drained, so the writer's queue lets it exit
        pass
    writer.join(timeout=300)
    assert writer.exitcode == 0
    assert rebuilt.returncode == 0, rebuilt.stderr
    record_property("events_written_during_rebuild", during - before)  # how much overlapped: load decides
    assert itertrack("project", "--store", store).returncode == 0
    assert_same_models(view_models(view), fold_models(tracker))


def test_a_second_runner_is_refused_with_a_clear_message(
    store_and_view: tuple[str, PerformanceTracker, ViewTables],
) -> None:
    """While `project --follow` runs, another `project` exits 1 saying another one is running."""
    store, _, _ = store_and_view
    follower = subprocess.Popen([ITERTRACK, "project", "--follow", "--store", store], stdout=subprocess.PIPE, text=True)
    try:
        stdout = follower.stdout
        assert stdout is not None
        wait_for(lambda: "following" in stdout.readline(), 300, "follow mode")
        second = itertrack("project", "--store", store)
        assert second.returncode == 1
        assert "another `itertrack project` is already keeping this store's read models" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=60)
    assert follower.returncode == 0
