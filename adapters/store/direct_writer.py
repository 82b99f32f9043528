"""The writer of a store without a spool: each change's events go straight to the store, or the call fails."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from itertrack.adapters.store.event_store import EventSourcedStore
from itertrack.domain.model.changes import Change
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.service.store_ports import IterationWriter, PendingAppend


class DirectWriter(IterationWriter):
    """Appends to the event store in the caller's thread (changes of concurrent callers share a transaction: see
    `group_commit`); an unreachable store raises `StoreUnavailableError`."""

    def __init__(self, store: EventSourcedStore) -> None:
        self.store = store

    def append(
        self,
        events: Sequence[Iteration.Event],
        change: Change | None,
        record: IterationRecord | None,
        base: UUID | None = None,
    ) -> int | None:
        return self.store.append(events, record)

    def append_many(self, changes: Sequence[PendingAppend]) -> list[int | Exception | None]:
        return self.store.append_many([(events, record, encoded) for events, _, record, _, encoded in changes])
