"""The tracker's driven ports: where iterations are loaded from, where their changes go, how a retry waits.

The tracker is load, apply, save: it loads an iteration through `IterationStore`, applies a change
(domain/model/changes.py), and hands the new events to an `IterationWriter`. Whether the writer sends
them straight to the store or keeps them in an outage spool is the writer's business; the tracker
only learns that the change is done (durable) or raised a typed error. The adapters implement these
ports (an event store, a direct writer, a spooling writer); the composition root wires them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from uuid import UUID

from itertrack.domain.model.changes import Change
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.records import IterationRecord

PendingAppend = tuple[Sequence[Iteration.Event], Change | None, IterationRecord | None, UUID | None, object]
"""One change as `IterationWriter.append_many` takes it: `append`'s (events, change, record, base), and the events
as `IterationStore.encode` gave them (None when not encoded yet)."""


class VersionTakenError(Exception):
    """Raised by `IterationWriter.append` when another writer already holds one of the events' versions.

    Not an error the host sees: the tracker re-loads the iteration and re-applies the change.
    """


class IterationStore(ABC):
    """The event store seen from the tracker: iterations by id (cached in this process), their events, records.

    Every method raises `StoreUnavailableError` when the store does not answer.
    """

    @abstractmethod
    def load(self, iteration_id: UUID) -> Iteration:
        """The iteration (this process's cached copy when it has one); `IterationNotFoundError` when absent.

        The returned object is the cached one: the caller holds the iteration's lock while changing it,
        and calls `evict` after any failure that may have left it changed.
        """

    def cached(self, iteration_id: UUID) -> Iteration | None:
        """This process's copy of the iteration when `load` would return it without reading the store (the
        caller changes it under the iteration's lock, as with `load`); None when there is none, or when loading
        reads the store anyway. A store that cannot tell returns None."""
        return None

    def encode(self, events: Sequence[Iteration.Event]) -> object:
        """The events as this store writes them (opaque to the domain), for `IterationWriter.append_many`; a
        caller encodes them where the time is best spent (the async tracker: in its bounded loop passes, not in
        its writer thread). None from a store that encodes when it writes."""
        return None

    @abstractmethod
    def catch_up(self, iteration_id: UUID) -> int:
        """Bring this process's copy of the iteration up to the stored version; how many events it lacked.

        0 when the copy was current or there is none (`load` then reads the whole history). Used under
        `serialised`, where the copy is then the latest and the change's save cannot lose the race.
        """

    @abstractmethod
    def is_cached(self, iteration_id: UUID) -> bool:
        """Whether this process holds a copy of the iteration."""

    @abstractmethod
    def keep(self, iteration: Iteration) -> None:
        """Cache the iteration as it is now (after its changes were written)."""

    @abstractmethod
    def evict(self, iteration_id: UUID) -> None:
        """Forget this process's copy of the iteration (the next load reads the store)."""

    @abstractmethod
    def events(self, iteration_id: UUID, *, gt: int | None = None, lte: int | None = None) -> list[Iteration.Event]:
        """The iteration's stored events with versions in (gt, lte], oldest first (an empty list if none)."""

    @abstractmethod
    def holds(self, events: Sequence[Iteration.Event]) -> bool:
        """Whether the store holds exactly these events at their versions (each carries a unique event id).

        A commit whose acknowledgement was lost meets its own rows on the (id, version) key: that is
        success, not a conflict to re-apply.
        """

    @abstractmethod
    def serialised(self, iteration_id: UUID) -> AbstractContextManager[None]:
        """Make every other writer of this iteration wait while the block runs (entered after a lost version
        race): a change loaded, applied and saved inside it cannot lose the race. A store that cannot (a
        pool of one connection) makes it a no-op, and the change may lose again."""

    @abstractmethod
    def record(self, iteration_id: UUID) -> IterationRecord | None:
        """The record the saving step stored under this id, if any."""

    @abstractmethod
    def migrate(self) -> None:
        """Create the store's tables if they do not exist (safe to run from many processes)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and files."""


class IterationWriter(ABC):
    """Where the events of an applied change go: straight to the store, or through an outage spool.

    A writer that spools answers `append` once the change is durable in the spool, keeps changes it
    cannot make into events yet (`keep_change`), and forwards them in order when the store answers.
    """

    @abstractmethod
    def append(
        self,
        events: Sequence[Iteration.Event],
        change: Change | None,
        record: IterationRecord | None,
        base: UUID | None = None,
    ) -> int | None:
        """Write one change's events (with the saving step's record) durably, atomically.

        `change` is the change that made them (None for a new iteration), so a writer may keep the
        change itself; `base` is the id of the last event of the state it was applied to (None for a new
        iteration), so a writer that sends them later can tell whether the store still holds that state.
        Returns the last notification id written, or None when the events wait in a spool. Raises
        `VersionTakenError` when another writer holds one of their versions, and `StoreUnavailableError`
        when the store does not answer and nothing could keep them.
        """

    def append_many(self, changes: Sequence[PendingAppend]) -> list[int | Exception | None]:
        """Write several changes, each as `append` would, sharing store transactions where the writer can.

        `changes`: (events, change, record, base) per change, as `append` takes them. Returns one outcome per
        change, in order: what `append` would have returned, or the exception it would have raised
        (`VersionTakenError`, `StoreUnavailableError`, ...), so one change's failure is its own. This default
        appends them one by one; a writer with group commit writes them in one transaction.
        """
        outcomes: list[int | Exception | None] = []
        for events, change, record, base, _ in changes:
            try:
                outcomes.append(self.append(events, change, record, base))
            except Exception as e:  # the change's own outcome, handed back to its caller
                outcomes.append(e)
        return outcomes

    def writes_through(self) -> bool:
        """Whether a change goes straight to the store now (nothing of any iteration waits, the store answered
        last): `must_keep_change` is then False for every iteration, and asking costs nothing."""
        return True

    def must_keep_change(self, iteration_id: UUID, cached: bool) -> bool:
        """Whether a change of this iteration must wait as a change, not be applied here now.

        True while earlier changes of the iteration wait as changes, or while the iteration's stored
        version is unknown to this process (not cached, store away or behind waiting changes).
        A writer without a spool never keeps changes.
        """
        return False

    def keep_change(
        self, iteration_id: UUID, change: Change, at: datetime, record: IterationRecord | None, *, outage: bool
    ) -> bool:
        """Keep the change itself, to be applied on the stored iteration later; False if this writer cannot.

        `outage` says the store just failed to answer (loading the iteration, or checking a conflict).
        """
        return False

    def waiting(self, iteration_id: UUID) -> int:
        """How many changes of this iteration wait to reach the store (0 for a writer without a spool)."""
        return 0

    def store_answers(self) -> bool:
        """Whether the store answered the last time it was asked (a writer without a spool always asks it)."""
        return True

    def tolerates_outage(self) -> bool:
        """Whether this writer keeps changes while the store is away (reads may then serve cached copies)."""
        return False

    def watch(self, forgotten: Callable[[UUID], None], saved: Callable[[int], None]) -> None:
        """Be told of changes this writer appended on its own: `forgotten(iteration_id)` when the store's
        copy of an iteration moved past this process's copy, `saved(notification_id)` after each append."""
        return

    def close(self) -> None:
        """Stop background work (finishing the change in hand); what waits stays durable."""
        return


class RetryPause(ABC):
    """How long to wait before retrying a change that lost a version race."""

    @abstractmethod
    def pause(self, attempt: int) -> None:
        """Wait before attempt `attempt + 1` (jittered and capped by the adapter)."""
