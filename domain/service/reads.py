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
from itertrack.domain.service.replay import (
    before_start,
    beyond_last,
    checked_instant,
    checked_version,
    state_of,
    version_at,
)
from itertrack.domain.service.replay_cache import DEFAULT_MAX_ENTRIES, Prefix, ReplayCache
from itertrack.domain.service.store_ports import IterationStore, IterationWriter


class IterationReads:
    """Reads through the tracker's store, under the tracker's per-iteration locks.

    States as of a version or an instant come from `replays` (replay_cache.py): each iteration's events
    are read and decoded once, and only the events after those held are asked of the store, when the
    answer can depend on them.
    """

    def __init__(
        self,
        store: IterationStore,
        writer: IterationWriter,
        lock: Callable[[UUID], threading.Lock],
        replay_cache_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._store = store
        self._writer = writer
        self._lock = lock
        self.replays = ReplayCache(replay_cache_entries)

    def get_iteration(self, iid: UUID, *, version: int | None, at: datetime | None) -> IterationState:
        """State now, as of `version`, or as of the instant `at` (not both)."""
        if version is not None and at is not None:
            raise InvalidInputError("at", at, "give either version or at, not both")
        if version is not None:
            return self._as_of_version(iid, checked_version(version))
        if at is not None:
            return self._as_of_instant(iid, checked_instant(at))
        return self._now(iid)

    def history(self, iid: UUID) -> list[Iteration.Event]:
        """The iteration's stored events, oldest first; `IterationNotFoundError` when it has none.

        One query for the events after those already held (none when they end the iteration).
        """
        prefix = self.replays.get(iid)
        if prefix is None or not prefix.finished:
            prefix = self._read(iid, prefix)
            if prefix is None:
                return self._stored(iid)
        return list(prefix.events)

    def version_at(self, iid: UUID, at: object) -> int:
        """The last version whose timestamp is at or before `at` (`replay.version_at`, from the held events)."""
        instant = checked_instant(at)
        prefix = self._prefix_at(iid, instant, self.replays.get(iid))
        if prefix is None:
            return version_at(self._stored(iid), instant)
        version = prefix.version_at(instant)
        if version == 0:
            raise before_start(instant, prefix.events[0])
        return version

    def _as_of_version(self, iid: UUID, version: int) -> IterationState:
        prefix = self.replays.get(iid)
        held = prefix is not None
        if prefix is None or (version > prefix.tip and not prefix.finished):
            # Read only up to `version`, as a read without the cache would: a cold read costs no more.
            prefix = self._read(iid, prefix, lte=version)
            if prefix is None:
                return state_of(self._stored(iid, lte=version, version=version))
        if version > prefix.tip:
            raise beyond_last(version, prefix.tip)
        return self.replays.state(iid, prefix, version, remember=held)

    def _as_of_instant(self, iid: UUID, at: datetime) -> IterationState:
        held = self.replays.get(iid)
        prefix = self._prefix_at(iid, at, held)
        if prefix is None:
            events = self._stored(iid)
            return state_of(events[: version_at(events, at)])
        version = prefix.version_at(at)
        if version == 0:
            raise before_start(at, prefix.events[0])
        return self.replays.state(iid, prefix, version, remember=held is not None)

    def _prefix_at(self, iid: UUID, at: datetime, prefix: Prefix | None) -> Prefix | None:
        """A prefix that decides the version as of `at`: the held one when it holds an event after `at` (or
        ends the iteration), else the held one with what the store has after it (None: a gap, see `_read`)."""
        if prefix is not None and (prefix.finished or prefix.latest() > at):
            return prefix
        return self._read(iid, prefix)

    def _read(self, iid: UUID, prefix: Prefix | None, lte: int | None = None) -> Prefix | None:
        """`prefix` extended with the stored events after it (up to `lte`): one indexed query.

        `IterationNotFoundError` when the iteration has no events; None when the stored versions do not run
        1..n (never in a sound store; `itertrack verify` reports it), and the caller replays the stored
        events without the cache.
        """
        tip = 0 if prefix is None else prefix.tip
        newer = self._store.events(iid, gt=tip or None, lte=lte)
        if not tip and not newer:
            raise IterationNotFoundError(iid)
        return self.replays.extended(iid, prefix, newer)

    def _stored(self, iid: UUID, lte: int | None = None, version: int | None = None) -> list[Iteration.Event]:
        """The stored events up to `lte`, without the cache; the last must be `version` when given."""
        events = self._store.events(iid, lte=lte)
        if not events:
            raise IterationNotFoundError(iid)
        if version is not None and events[-1].originator_version < version:
            raise beyond_last(version, events[-1].originator_version)
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
