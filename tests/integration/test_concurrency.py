"""Several OS processes change one iteration at once: no update is lost or applied twice."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable

import pytest
from support import add_to_metric_worker, migrate_worker

from itertrack.domain import Iteration, PerformanceTracker

Open = Callable[..., PerformanceTracker]
PROCESSES = 4
TIMES = 100


def run_processes(target: Callable[..., None], args: tuple[object, ...], count: int) -> list[object]:
    """Start `count` processes behind one gate, open it, and collect one result from each."""
    ctx = multiprocessing.get_context("spawn")
    gate = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, gate, results)) for _ in range(count)]
    for proc in procs:
        proc.start()
    gate.set()
    collected = [results.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0, f"worker exited with {proc.exitcode}"
    return collected


@pytest.mark.slow
def test_four_processes_add_to_one_metric(durable_store: str, open_tracker: Open) -> None:
    """4 processes x 100 increments of one metric: the total is exactly 400 and there are 401 events."""
    tracker = open_tracker(durable_store)
    iid = tracker.start_iteration("agent-1", 1)
    retries = run_processes(add_to_metric_worker, (durable_store, str(iid), TIMES), PROCESSES)
    state = tracker.get_iteration(iid)
    assert state.metrics == {"contended_total": PROCESSES * TIMES}
    assert state.version == 1 + PROCESSES * TIMES
    events = tracker.history(iid)
    assert [e.originator_version for e in events] == list(range(1, 2 + PROCESSES * TIMES))
    assert sum(isinstance(e, Iteration.MetricsRecorded) for e in events) == PROCESSES * TIMES
    # The processes really raced: at least one change was re-applied after a conflict.
    assert sum(int(str(r)) for r in retries) > 0


@pytest.mark.slow
@pytest.mark.postgres
def test_many_processes_migrate_one_schema_at_once(pg_store: str, open_tracker: Open) -> None:
    """Six processes migrating a fresh schema together all succeed, and the store then works."""
    assert run_processes(migrate_worker, (pg_store,), 6) == ["migrated"] * 6
    tracker = open_tracker(pg_store, migrate=False)
    assert tracker.get_iteration(tracker.start_iteration("agent-1", 1)).version == 1


def test_threads_of_one_tracker_share_its_cache_safely(any_store: str, open_tracker: Open) -> None:
    """8 threads x 50 increments on 2 iterations through one tracker: every increment lands once."""
    tracker = open_tracker(any_store)
    ids = [tracker.start_iteration("agent-1", n) for n in range(2)]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(50):
                tracker.update_metrics(ids[n % 2], {"threaded_total": 1})
                tracker.get_iteration(ids[(n + 1) % 2])
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    for iid in ids:
        state = tracker.get_iteration(iid)
        assert state.metrics == {"threaded_total": 200}
        assert state.version == 201
