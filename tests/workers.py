"""Child processes for the concurrency tests, and the start gate that makes them race for real.

A worker imports, opens its store and gets ready, reports ready, then waits at the gate. The test opens
the gate only when every worker has reported, so however slow the machine, the race starts with all of
them at the line. Waits are on conditions with timeouts, generous because a loaded machine is slow.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg  # noqa: F401  # imported before reporting ready, so no worker starts the race still importing it

from itertrack.domain import PerformanceTracker

READY_TIMEOUT_S = 300.0  # spawning a Python and importing the tracker, on a loaded machine
RESULT_TIMEOUT_S = 900.0  # the whole race, on a loaded machine


@dataclass(frozen=True)
class StartGate:
    """Where workers report ready and wait together for the start."""

    ready: Any  # a multiprocessing queue of worker pids
    go: Any  # a multiprocessing event

    def report_ready_and_wait(self) -> None:
        """Tell the test this worker is ready, then block until the test opens the gate."""
        self.ready.put(os.getpid())
        if not self.go.wait(READY_TIMEOUT_S):
            raise TimeoutError("the start gate never opened")


def _collect(source: Any, count: int, procs: list[Any], timeout: float, what: str) -> list[object]:
    """`count` items from `source`; fails as soon as a worker dies, or after `timeout` seconds."""
    items: list[object] = []
    deadline = time.monotonic() + timeout
    while len(items) < count:
        try:
            items.append(source.get(timeout=0.5))
            continue
        except queue.Empty:
            pass
        failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
        if failed:
            raise AssertionError(f"a worker exited with {failed[0]} before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} ({len(items)} of {count})")
    return items


def race(target: Callable[..., None], args: tuple[object, ...], count: int) -> list[object]:
    """Start `count` workers `target(*args, gate, results)`; once all are ready open the gate; one result each."""
    ctx = multiprocessing.get_context("spawn")
    gate = StartGate(ctx.Queue(), ctx.Event())
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, gate, results)) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        _collect(gate.ready, count, procs, READY_TIMEOUT_S, "every worker to report ready")
        gate.go.set()
        collected = _collect(results, count, procs, RESULT_TIMEOUT_S, "every worker's result")
        for proc in procs:
            proc.join(timeout=60)
            assert proc.exitcode == 0, f"worker exited with {proc.exitcode}"
        return collected
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)


def add_to_metric_worker(  # noqa: PLR0917
    store: str, iteration_id: str, times: int, max_attempts: int, gate: StartGate, results: Any
) -> None:
    """Child process: read the iteration (caching its version), get ready, then add 1 to one metric `times` times.

    Every worker caches the same version before the gate opens, so every worker's first change is made
    on that version and all but one of them must lose the race and retry: the race is real by
    construction, not by timing.
    """
    with PerformanceTracker(store=store, migrate=False, max_attempts=max_attempts) as tracker:
        tracker.get_iteration(iteration_id)
        gate.report_ready_and_wait()
        for _ in range(times):
            tracker.update_metrics(iteration_id, {"contended_total": 1})
        results.put(tracker.conflicts_retried)


def migrate_worker(store: str, gate: StartGate, results: Any) -> None:
    """Child process: get ready (imports done), then migrate the store."""
    gate.report_ready_and_wait()
    with PerformanceTracker(store=store, migrate=True):
        results.put("migrated")


def paced_writer_worker(store: str, iterations: int, pause_s: float, stop: Any, results: Any) -> None:
    """Child process: run up to `iterations` short iterations, until `stop` is set, reporting (id, wall time) each.

    The pause paces the writer so that its changes arrive one by one while other work runs; no test
    waits on it. A final None says the writer is done.
    """
    with PerformanceTracker(store=store, migrate=False) as tracker:
        for n in range(iterations):
            iid = tracker.start_iteration(f"agent-{n % 4}", n)
            tracker.update_phase(iid, "scan_generation")
            tracker.update_metrics(iid, {"scan_generation_tokens": n})
            tracker.update_phase(iid, "completed")
            results.put((str(iid), time.time()))
            if stop.wait(pause_s):
                break
    results.put(None)


def contend_and_count_give_ups(  # noqa: PLR0917  # a Process target: multiprocessing passes args by position
    store: str, iteration_id: str, times: int, max_attempts: int, gate: StartGate, results: Any
) -> None:
    """Child process: like `add_to_metric_worker`, but a change that gives up is counted, not fatal.

    Reports (increments acknowledged, `ConcurrencyError`s raised, races lost), so the test can assert
    the total equals the acknowledged increments and that no change gave up.
    """
    from itertrack.domain.model.errors import ConcurrencyError  # noqa: PLC0415  # the child's own import

    acknowledged = give_ups = 0
    with PerformanceTracker(store=store, migrate=False, max_attempts=max_attempts) as tracker:
        tracker.get_iteration(iteration_id)
        gate.report_ready_and_wait()
        for _ in range(times):
            try:
                tracker.update_metrics(iteration_id, {"contended_total": 1})
            except ConcurrencyError:
                give_ups += 1
            else:
                acknowledged += 1
        results.put((acknowledged, give_ups, tracker.conflicts_retried))
