"""A change decided without waiting: applied to this process's copy of an iteration, its events not yet written.

The async tracker decides changes on its event loop (`PerformanceTracker.decide_change`, `decide_start`: pure
Python, no store I/O, no lock wait) and hands the events of many changes to one thread that writes them in
shared transactions (`IterationWriter.append_many`); `PerformanceTracker.settle` then finishes each change
with its outcome, in that thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from uuid import UUID

from itertrack.domain.model.changes import Change
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.service.store_ports import PendingAppend


@dataclass(eq=False, slots=True)
class DecidedChange:
    """One change applied to the iteration's cached copy (`iteration`), whose `events` wait to be written.

    `change` is None for a new iteration (its start). `lock` is the iteration's lock in this process, held
    from the decision until `settle` (None for a start, which holds none): no other thread changes the copy
    meanwhile.
    """

    iteration: Iteration
    events: list[Iteration.Event]
    change: Change | None
    record: IterationRecord | None
    base: UUID | None
    lock: threading.Lock | None
    encoded: object = None  # the events as the store writes them (`IterationStore.encode`), None if not yet

    @property
    def iteration_id(self) -> UUID:
        """The changed iteration's id."""
        return self.iteration.id

    def as_append(self) -> PendingAppend:
        """The change as `IterationWriter.append_many` takes it."""
        return (self.events, self.change, self.record, self.base, self.encoded)
