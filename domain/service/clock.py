"""The one seam through which the domain reads time and makes new ids."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from itertrack.domain.model.ids import random_id


class Clock(Protocol):
    """Wall time for event timestamps, a monotonic clock for durations, and new ids."""

    def now(self) -> datetime:
        """Timezone-aware current time."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""
        ...

    def new_id(self) -> UUID:
        """A fresh random id."""
        ...


class SystemClock:
    """The real clock, and random version-4 ids from the domain's id seam (`ids.random_id`)."""

    def now(self) -> datetime:
        return datetime.now(UTC)  # the one seam where the domain reads the wall clock (Clock port)

    def monotonic(self) -> float:
        return time.monotonic()

    def new_id(self) -> UUID:
        return random_id()  # the domain's id seam: see ids.py
