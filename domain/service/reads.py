"""The tracker's queries: an iteration's state now (with what other processes stored since), as of a version
or an instant, and its history."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from itertrack.domain.model.errors import InvalidInputError, IterationNotFoundError, StoreUnavailableError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.state import IterationState
from itertrack.domain.service.replay import state_of, version_at
from itertrack.domain.service.store_ports import IterationStore, IterationWriter


class IterationReads:
    """Reads through the tracker's store, under the tracker's per-iteration locks."""

    def __init__(self, store: IterationStore, writer: IterationWriter, lock: Callable[[UUID], threading.Lock]) -> None:
        self._store = store
        self._writer = writer
        self._lock = lock

    def get_iteration(self, iid: UUID, *, version: int | None, at: datetime | None) -> IterationState:
        """State now, as of `version`, or as of the instant `at` (not both)."""
        if version is not None and at is not None:
            raise InvalidInputError("at", at, "give either version or at, not both")
        if version is not None:
            return state_of(self._events_until_version(iid, version))
        if at is not None:
            events = self.history(iid)
            return state_of(events[: version_at(events, at)])
        return self._now(iid)

    def history(self, iid: UUID) -> list[Iteration.Event]:
        """The iteration's stored events, oldest first; `IterationNotFoundError` when it has none."""
        events = self._store.events(iid)
        if not events:
            raise IterationNotFoundError(iid)
        return events

    def _events_until_version(self, iid: UUID, version: object) -> list[Iteration.Event]:
        """The iteration's events up to `version` (one query), which must exist."""
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 2**62:
            raise InvalidInputError("version", version, "must be an int of at least 1")
        events = self._store.events(iid, lte=version)
        if not events:
            raise IterationNotFoundError(iid)
        if events[-1].originator_version < version:
            last = events[-1].originator_version
            raise InvalidInputError("version", version, f"is beyond the iteration's last version {last}")
        return events

    def _now(self, iid: UUID) -> IterationState:
        """A snapshot of the iteration now; the cache may be behind other processes, so read what came after it."""
        with self._lock(iid):
            cached = self._store.is_cached(iid)
            if not cached and not self._writer.store_answers():
                raise StoreUnavailableError(f"the store is unavailable and iteration {iid} is not loaded here")
            iteration = self._store.load(iid)
            waiting = self._writer.waiting(iid)
            if waiting and not cached:
                # Loaded from the store, which is behind the waiting changes: never keep that copy.
                self._store.evict(iid)
            if not waiting and self._writer.store_answers():
                self._catch_up(iteration)
            return IterationState.of(iteration, spooled_changes=waiting)

    def _catch_up(self, iteration: Iteration) -> None:
        """Apply what other processes stored after this process's copy (kept as it was if the store is away)."""
        try:
            for event in self._store.events(iteration.id, gt=iteration.version):
                event.mutate(iteration)
        except StoreUnavailableError:
            if not self._writer.tolerates_outage():
                self._store.evict(iteration.id)
                raise
            # The store is away: the cached copy is what this process knows.
        except BaseException:
            self._store.evict(iteration.id)
            raise
