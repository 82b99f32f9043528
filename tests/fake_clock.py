"""The suite's one fake clock: it satisfies the domain's `Clock` protocol and moves only as a test says."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import UUID

START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeClock:
    """Wall time, monotonic time and seeded ids that move only as the test says: reproducible timestamps.

    - `step_ms` (default 1): each `now()` reading first moves wall time on by this much, so events get
      distinct, ordered timestamps; `step_ms=0` freezes it (every reading is the same instant).
    - `advance(ms)`: `ms` milliseconds pass, on the wall and the monotonic clock alike (a timed block).
    - `at(ms)`: wall time reads `start + ms` from now on; it may go back (a writer with a skewed clock).
      The monotonic clock never goes back: only `advance` moves it.
    """

    def __init__(self, start: datetime = START, *, step_ms: float = 1.0, seed: int = 1) -> None:
        self.start = start
        self.current = start
        self.step = timedelta(milliseconds=step_ms)
        self.mono = 0.0
        self._ids = random.Random(seed)

    def now(self) -> datetime:
        self.current += self.step
        return self.current

    def monotonic(self) -> float:
        return self.mono

    def new_id(self) -> UUID:
        return UUID(int=self._ids.getrandbits(128), version=4)

    def advance(self, ms: float) -> None:
        """Let `ms` milliseconds pass."""
        self.current += timedelta(milliseconds=ms)
        self.mono += ms / 1000.0

    def at(self, ms: float) -> None:
        """Set wall time to `ms` milliseconds after the start."""
        self.current = self.start + timedelta(milliseconds=ms)
