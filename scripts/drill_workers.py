"""Processes the drills start: contending writers and learning-flow hosts."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from typing import Any

from itertrack.adapters.fakes import FakeBacktester, FakeLLM, FakeScanner, Scenario, SimulatedClock
from itertrack.domain import PerformanceTracker, SystemClock
from itertrack.domain.learning_flow import LearningIterationService


def contender(store: str, ids: list[str], changes: int, ready: Any, gate: Any, results: Any) -> None:  # noqa: PLR0917
    """Add 1 to `hammered` on each of a handful of iterations in turn, `changes` times; report conflicts."""
    with PerformanceTracker(store=store, migrate=False) as tracker:
        ready.put(True)
        gate.wait(60)
        targets = itertools.cycle(ids)
        for _ in range(changes):
            tracker.update_metrics(next(targets), {"hammered": 1})
        results.put(tracker.conflicts_retried)


def flow_host(store: str, host: int, seed: int) -> None:
    """Run learning iterations until killed (the kill drill's writer)."""
    system = SystemClock()
    clock = SimulatedClock(start=system.now(), new_id=system.new_id)
    scenario = Scenario(clock, seed=seed, failure_rate=0.2)
    with PerformanceTracker(store=store, migrate=False, clock=clock) as tracker:
        service = LearningIterationService(tracker, FakeLLM(scenario), FakeScanner(scenario), FakeBacktester(scenario))
        for n in itertools.count():
            with contextlib.suppress(RuntimeError):  # a planned failure; the flow marked the iteration failed
                service.run_iteration(f"host-{host}", n, iteration_id=uuid.uuid4())
