"""Processes the drills start: contending writers, learning-flow hosts and the restarting host."""

from __future__ import annotations

import contextlib
import itertools
import random
import time
import uuid
from pathlib import Path
from typing import Any

from itertrack.adapters.bootstrap import spooling_writer
from itertrack.adapters.demo.fakes import FakeBacktester, FakeLLM, FakeScanner, Scenario, SimulatedClock
from itertrack.domain import ConcurrencyError, PerformanceTracker, SystemClock
from itertrack.domain.service.learning_flow import LearningIterationService


def contender(store: str, ids: list[str], changes: int, ready: Any, gate: Any, results: Any) -> None:  # noqa: PLR0917  # a Process target: multiprocessing passes args by position
    """Add 1 to `hammered` on each of a handful of iterations in turn, `changes` times; report
    (conflicts retried, changes that gave up with `ConcurrencyError`)."""
    with PerformanceTracker(store=store, migrate=False) as tracker:
        ready.put(True)
        if not gate.wait(300):
            raise TimeoutError("the start gate never opened")
        targets = itertools.cycle(ids)
        give_ups = 0
        for _ in range(changes):
            try:
                tracker.update_metrics(next(targets), {"hammered": 1})
            except ConcurrencyError:
                give_ups += 1
        results.put((tracker.conflicts_retried, give_ups))


def flow_host(store: str, host: int, seed: int, journal: str) -> None:
    """Run learning iterations until killed (the kill drill's writer), journaling each finished one.

    A journal line `<id> <version>` is written (line-buffered, so a SIGKILL cannot lose it) after the
    iteration's last tracked change was acknowledged: the drill then checks the store holds all of it.
    The file `<journal>.ready.<host>` appears once the host has its tracker open and is about to write.
    """
    system = SystemClock()
    clock = SimulatedClock(start=system.now(), new_id=system.new_id)
    scenario = Scenario(clock, seed=seed, failure_rate=0.2)
    with (
        Path(journal).open("a", buffering=1) as log,
        PerformanceTracker(store=store, migrate=False, clock=clock) as tracker,
    ):
        service = LearningIterationService(tracker, FakeLLM(scenario), FakeScanner(scenario), FakeBacktester(scenario))
        Path(f"{journal}.ready.{host}").touch()
        for n in itertools.count():
            iid = uuid.uuid4()
            with contextlib.suppress(RuntimeError):  # a planned failure; the flow marked the iteration failed
                service.run_iteration(f"host-{host}", n, iteration_id=iid)
            log.write(f"{iid} {tracker.get_iteration(iid).version}\n")


def restarting_host(store: str, ids: list[str], journal: str, seconds: float, seed: int) -> None:
    """One life of the outage drill's restarting host: add 1 to long-running iterations, journaling each call.

    Each journal line is written (line-buffered) before the process may be SIGKILLed: `try` before a call,
    `ok` after it returned, so the drill knows which changes were acknowledged and which were cut short.
    """
    rng = random.Random(seed)
    with Path(journal).open("a", buffering=1) as log, PerformanceTracker(store=store, migrate=False) as host:
        log.write(f"life {int(not spooling_writer(host).store_answers())}\n")
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            iid = rng.choice(ids)
            log.write(f"try {iid}\n")
            host.update_metrics(iid, {"analysis_tokens": 1})  # must never raise, outage or not
            log.write(f"ok {iid}\n")
            time.sleep(0.005)
        log.write(f"end {spooling_writer(host).changes_spooled} {spooling_writer(host).changes_deferred}\n")
