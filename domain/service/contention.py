"""Which iterations this process saw contended lately: their changes queue on the store's lock at once.

A change first tries without the store's per-iteration lock (one round trip when nobody else writes the
iteration). A change that lost a version race retries under the lock, where it cannot lose again (the
store makes every other writer of that iteration wait meanwhile). While other writers keep changing the
same iteration, a first try would mostly lose too, and each loss costs a re-load of the whole history:
so for `CONTENTION_WINDOW_S` after the last sign of another writer (a lost race, or events of others
found when catching up under the lock), this process's changes of that iteration take the lock at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from uuid import UUID

# Seconds after the last sign of another writer during which changes queue on the lock from the start.
CONTENTION_WINDOW_S = 2.0
# Expired entries are dropped when this many iterations are remembered (a host touching many iterations).
_PRUNE_ABOVE = 1024


class RecentContention:
    """Per iteration, until when (monotonic seconds) changes queue on the store's lock from their first try."""

    def __init__(self, monotonic: Callable[[], float], window_s: float = CONTENTION_WINDOW_S) -> None:
        self._monotonic = monotonic
        self._window_s = window_s
        self._until: dict[UUID, float] = {}
        self._lock = threading.Lock()

    def active(self, iteration_id: UUID) -> bool:
        """Whether another writer changed this iteration recently (a dict look-up when it did not)."""
        if not self._until:
            return False  # nobody contended lately (the common case): not even a look-up
        until = self._until.get(iteration_id)
        if until is None:
            return False
        if self._monotonic() < until:
            return True
        with self._lock:
            self._until.pop(iteration_id, None)
        return False

    def seen(self, iteration_id: UUID) -> None:
        """Another writer changed this iteration just now: queue its changes for the next window."""
        now = self._monotonic()
        with self._lock:
            if len(self._until) >= _PRUNE_ABOVE:
                self._until = {iid: until for iid, until in self._until.items() if until > now}
            self._until[iteration_id] = now + self._window_s
