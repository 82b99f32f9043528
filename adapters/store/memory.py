"""The in-memory store: eventsourcing's POPO recorder plus a dict of iteration records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder, POPOFactory

from itertrack.adapters.library_hooks import popo_events, popo_lock
from itertrack.adapters.store.record_rows import records_of
from itertrack.adapters.store.record_store import IterationRecordStore
from itertrack.adapters.views.lock import NoProjectionLock, ProjectionLock
from itertrack.adapters.views.tables import ViewTables
from itertrack.domain.model.errors import StoreConfigError


class MemoryRecorder(POPOApplicationRecorder, IterationRecordStore):
    """Events and iteration records, written together under the recorder's lock."""

    def __init__(self) -> None:
        super().__init__()
        self._records: dict[UUID, dict[str, Any]] = {}

    def _insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        records = records_of(kwargs) if kwargs else []
        with popo_lock(self):
            if records:
                ids_given = [record.id for record in records]
                if len(set(ids_given)) < len(ids_given) or any(i in self._records for i in ids_given):
                    msg = f"iteration record among {ids_given} already stored"
                    raise IntegrityError(msg)
            # Raises before changing anything when a version is taken.
            ids = self._append(stored_events)
            for record in records:
                if record.id is not None:
                    self._records[record.id] = record.model_dump()
            return ids

    def _append(self, stored_events: Sequence[StoredEvent]) -> list[int]:
        """The library's version check and append (same structures, same errors), in one pass over the events:
        each originator id is made a string once, not twice. Called holding the recorder's lock."""
        events, index = popo_events(self)
        keys = []
        new: set[tuple[str, int]] = set()
        for s in stored_events:
            key = str(s.originator_id)
            if s.originator_version in index[key]:
                msg = f"Stored event already recorded: {s}"
                raise IntegrityError(msg)
            new.add((key, s.originator_version))
            keys.append(key)
        if len(new) < len(stored_events):
            msg = f"Stored events are not unique: {stored_events}"
            raise IntegrityError(msg)
        ids = []
        for key, s in zip(keys, stored_events, strict=True):
            events.append(s)
            index[key][s.originator_version] = len(events) - 1
            ids.append(len(events))
        return ids

    def migrate(self) -> None:
        """Nothing to create in memory."""

    def select_record_ids(self) -> list[UUID]:
        with popo_lock(self):
            return list(self._records)

    def select_iteration_record(self, iteration_id: UUID) -> dict[str, Any] | None:
        with popo_lock(self):
            row = self._records.get(iteration_id)
            return None if row is None else dict(row)


class MemoryStoreFactory(POPOFactory):
    """`memory://`: nothing survives the process; for tests and experiments."""

    def application_recorder(self) -> ApplicationRecorder:
        return MemoryRecorder()

    def read_model_views(self) -> ViewTables:
        """None: read models live in SQL tables beside the events."""
        raise StoreConfigError("store", "memory://", "read models need a SQLite or PostgreSQL store")

    def projection_lock(self) -> ProjectionLock:
        """Nothing to exclude: no other process sees this store."""
        return NoProjectionLock()
