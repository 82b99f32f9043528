"""Test helpers shared by every layer of the suite."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from itertrack.domain import PerformanceTracker


class StepClock:
    """A clock that moves 1 ms per reading (or as told), with seeded ids: reproducible timestamps."""

    def __init__(self, start: datetime | None = None, seed: int = 1) -> None:
        self.current = start or datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        self.mono = 0.0
        self._ids = random.Random(seed)

    def now(self) -> datetime:
        self.current += timedelta(milliseconds=1)
        return self.current

    def advance(self, ms: float) -> None:
        self.current += timedelta(milliseconds=ms)
        self.mono += ms / 1000.0

    def monotonic(self) -> float:
        return self.mono

    def new_id(self) -> UUID:
        return UUID(int=self._ids.getrandbits(128), version=4)


def add_to_metric_worker(store: str, iteration_id: str, times: int, gate: Any, results: Any) -> None:
    """Child process: wait for the start gate, then add 1 to one metric `times` times."""
    with PerformanceTracker(store=store, migrate=False) as tracker:
        if not gate.wait(60):
            raise TimeoutError("start gate never opened")
        for _ in range(times):
            tracker.update_metrics(iteration_id, {"contended_total": 1})
        results.put(tracker.conflicts_retried)


def migrate_worker(store: str, gate: Any, results: Any) -> None:
    """Child process: wait for the start gate, then migrate the store."""
    if not gate.wait(60):
        raise TimeoutError("start gate never opened")
    with PerformanceTracker(store=store, migrate=True):
        results.put("migrated")
