"""The views' projection: eventsourcing's `Projection`, applying events in batches, exactly once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from itertrack.domain.model.errors import StoreError
from itertrack.projections.fold import FoldInput

# Events per views transaction at most: a batch is also cut when the subscription has no more at hand, so
# following the log applies small batches at once; catching up applies big ones (fewer commits, and each
# index page a batch dirties written once for many rows).
DEFAULT_BATCH_SIZE = 5000


class PositionConflictError(StoreError):
    """Raised when another process moved the read models' position while a batch was being folded."""


class ReadModelsResetError(StoreError):
    """Raised when the read models' position went backwards under a running projection (a rebuild elsewhere)."""


class ViewStore(Protocol):
    """What the projection needs of a store's views."""

    def position(self) -> int:
        """The notification id of the last event applied (0 before the first)."""
        ...

    def apply(self, events: Sequence[FoldInput], expected: int, new: int) -> int:
        """Fold consecutive events onto the rows they touch (read in the same transaction), write them and move
        the position from `expected` to `new`, in one transaction; `PositionConflictError` if it moved."""
        ...


class ViewProjection(Projection[Any]):
    """Current phase, cumulative metrics and phase durations, kept by the library's projection runner.

    Events arrive in log order with their tracking positions. A batch is written in one
    transaction with one position move, by compare-and-set, so each event counts once; events
    another process applied meanwhile are skipped. `applied` counts the events this projection
    wrote; `on_batch(n)` is told of each batch it wrote.
    """

    name = "ReadModels"

    def __init__(
        self, view: Any, batch_size: int = DEFAULT_BATCH_SIZE, on_batch: Callable[[int], None] | None = None
    ) -> None:
        super().__init__(view=view)
        self.store: ViewStore = view
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.applied = 0
        self._position: int | None = None

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """The library's one-event entry point: a batch of one."""
        self.process_batch([(domain_event, tracking)])

    def process_batch(self, items: Sequence[tuple[Any, Tracking]]) -> None:
        """Apply consecutive events of the log; skip any another process applied meanwhile."""
        if self._position is None:
            self._position = self.store.position()
        while True:
            pending = [(e, t) for e, t in items if t.notification_id > self._position]
            if not pending:
                return
            expected = self._position
            new = pending[-1][1].notification_id
            events = [e for e, _ in pending]
            try:
                self.store.apply(events, expected, new)
            except PositionConflictError:
                moved_to = self.store.position()
                if moved_to < expected:
                    msg = f"read models went back from position {expected} to {moved_to}: restart the projection"
                    raise ReadModelsResetError(msg) from None
                self._position = moved_to
                continue
            self._position = new
            self.applied += len(events)
            if self.on_batch is not None:
                self.on_batch(len(events))
            return
