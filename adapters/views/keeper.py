"""Read models of a tracker's store: opening the views, catching up in batches, and the in-process keeper."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.store.memory import MemoryStoreFactory
from itertrack.adapters.store.postgres import PostgresStoreFactory
from itertrack.adapters.store.sqlite import SQLiteStoreFactory
from itertrack.adapters.store.unavailable import store_unavailable_as_typed_error
from itertrack.adapters.views.postgres import PostgresReadModelView
from itertrack.adapters.views.sqlite import SQLiteReadModelView
from itertrack.adapters.views.tables import ReadModelView
from itertrack.domain.model.errors import StoreConfigError, StoreNotMigratedError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.phases import Status
from itertrack.domain.model.text import parse_iteration_id
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.projections.projection import PositionConflictError, apply_batch
from itertrack.projections.rows import (
    AgentMetric,
    CurrentPhase,
    IterationMetric,
    PhaseDuration,
    ReadModelPosition,
)

log = logging.getLogger("itertrack")
DEFAULT_BATCH_SIZE = 500


StoreView = SQLiteReadModelView | PostgresReadModelView


def view_for(factory: InfrastructureFactory[Any]) -> StoreView:
    """The read-model view on the same database (and connection pool) as a store factory.

    A SQLite file's view tables are brought up to this version's shape here (single-writer, cheap);
    on PostgreSQL that is `itertrack migrate`'s job, so an older shape is an error naming it.
    """
    if isinstance(factory, SQLiteStoreFactory):
        sqlite_view = SQLiteReadModelView(factory.datastore)
        sqlite_view.migrate_views()
        return sqlite_view
    if isinstance(factory, PostgresStoreFactory):
        pg_view = PostgresReadModelView(factory.datastore)
        if pg_view.outdated_columns():
            raise StoreNotMigratedError("the read-model tables are from an older version: run `itertrack migrate`")
        return pg_view
    if isinstance(factory, MemoryStoreFactory):
        raise StoreConfigError("store", "memory://", "read models need a SQLite or PostgreSQL store")
    raise StoreConfigError("store", type(factory).__name__, "has no read models")


class CatchUp:
    """Applies the event log to the views in batches: one transaction and one position move per batch."""

    def __init__(self, tracker: PerformanceTracker, view: ReadModelView, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.tracker = tracker
        self.view = view
        self.batch_size = batch_size

    def position(self) -> ReadModelPosition:
        """How far the views are, and how far the log goes."""
        return ReadModelPosition(
            applied=self.view.position(), latest=store_of(self.tracker).recorder.max_notification_id() or 0
        )

    def run(self, until: int | None = None, on_batch: Callable[[int], None] | None = None) -> int:
        """Apply every event not yet applied (up to `until`); returns how many events this call applied."""
        applied = 0
        while True:
            start = self.view.position()
            if until is not None and start >= until:
                return applied
            notifications = store_of(self.tracker).recorder.select_notifications(
                start=start, limit=self.batch_size, inclusive_of_start=False
            )
            if not notifications:
                return applied
            events: list[Iteration.Event] = [store_of(self.tracker).mapper.to_domain_event(n) for n in notifications]  # type: ignore[misc]
            try:
                apply_batch(self.view, events, expected=start, new=notifications[-1].id)
            except PositionConflictError:
                continue  # another process applied them first: carry on from where it got to
            applied += len(events)
            if on_batch is not None:
                on_batch(len(events))


class ReadModels:
    """Keeps a tracker's read models current from inside the host's process, and answers queries.

    A background thread applies new events after each save of the tracker (and every
    `poll_interval` seconds, for other processes' events); every query first applies whatever is
    still pending, so a read right after a write sees that write.
    """

    def __init__(
        self,
        tracker: PerformanceTracker,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        poll_interval: float = 0.05,
        background: bool = True,
        catch_up_on_read: bool = True,
    ) -> None:
        self.tracker = tracker
        # The store's migrate step (run on first use of SQLite, by `itertrack migrate` on PostgreSQL)
        # has created the view tables along with the events table.
        self.view = view_for(store_of(tracker).factory)
        self.catch_up = CatchUp(tracker, self.view, batch_size)
        # False for a read-only role: queries then read the views as they are.
        self.catch_up_on_read = catch_up_on_read
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._poll_interval = poll_interval
        self._thread: threading.Thread | None = None
        tracker.add_save_listener(self._on_saved)
        if background:
            self._thread = threading.Thread(target=self._keep_current, name="itertrack-read-models", daemon=True)
            self._thread.start()

    def _on_saved(self, _notification_id: int) -> None:
        self._wake.set()

    def _keep_current(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(timeout=self._poll_interval)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self.sync()
            except Exception:
                log.warning("read models could not catch up; will retry", exc_info=True)
                self._closed.wait(timeout=1.0)

    @store_unavailable_as_typed_error()
    def sync(self) -> int:
        """Apply every event recorded so far; returns how many this call applied."""
        with self._lock:
            return self.catch_up.run()

    def _fresh(self) -> None:
        if self.catch_up_on_read:
            self.sync()

    def position(self) -> ReadModelPosition:
        """How far the read models are behind the log."""
        return self.catch_up.position()

    def current_phase(self, iteration_id: UUID | str) -> CurrentPhase:
        """Where one iteration is now."""
        iid = parse_iteration_id(iteration_id)
        self._fresh()
        return self.view.current_phase(iid)

    def iterations(
        self, agent: str | None = None, phase: str | None = None, status: Status | str | None = None, limit: int = 1000
    ) -> list[CurrentPhase]:
        """Iterations, newest first, by agent, phase and status."""
        self._fresh()
        return self.view.iterations(agent=agent, phase=phase, status=status, limit=limit)

    def metrics(self, iteration_id: UUID | str) -> list[IterationMetric]:
        """One iteration's metric totals."""
        iid = parse_iteration_id(iteration_id)
        self._fresh()
        return self.view.metrics(iid)

    def agent_metrics(self, agent: str | None = None) -> list[AgentMetric]:
        """Per-agent totals (every agent when `agent` is None)."""
        self._fresh()
        return self.view.agent_metrics(agent)

    def overall_metrics(self) -> list[AgentMetric]:
        """Totals across all agents."""
        self._fresh()
        return self.view.overall_metrics()

    def phase_durations(self, iteration_id: UUID | str) -> list[PhaseDuration]:
        """Time spent in each phase of one iteration, from event timestamps."""
        iid = parse_iteration_id(iteration_id)
        self._fresh()
        return self.view.phase_durations(iid)

    def close(self) -> None:
        """Stop keeping the read models current (the tracker stays open)."""
        self._closed.set()
        self._wake.set()
        self.tracker.remove_save_listener(self._on_saved)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ReadModels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
