"""Test helpers shared by every layer of the suite."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import UUID


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
