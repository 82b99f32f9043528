"""The one seam through which the domain reads time and makes new ids."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from itertrack.domain.model.random_ids import random_uuid4


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
    """The real clock and a random UUID4 source (`random_ids.random_uuid4`)."""

    def now(self) -> datetime:
        return datetime.now(UTC)  # the one seam where the domain reads the wall clock (Clock port)

    def monotonic(self) -> float:
        return time.monotonic()

    def new_id(self) -> UUID:
        return random_uuid4()  # no system call: see random_ids
