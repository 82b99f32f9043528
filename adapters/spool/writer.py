"""The spooling writer: changes go straight to the store while it answers, and wait in the spool while it does not.

Routing: an iteration with nothing waiting goes straight to a store that answers, so the host's new
work does not queue behind an outage's backlog; an iteration with changes waiting joins them, in order.
A change of an iteration this process never loaded cannot be made into events during an outage (its
next version is unknown): the change itself waits (a `DeferredChange`) and the forwarder applies it on
the stored iteration. The domain decides when a change must wait as a change (`must_wait_as_change`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

from itertrack.adapters.spool.forwarder import SpoolForwarder
from itertrack.adapters.spool.port import Spool
from itertrack.adapters.spool.state import SpoolFlush, SpoolState
from itertrack.adapters.store.event_store import EventSourcedStore
from itertrack.domain.model.changes import Change, DeferredChange
from itertrack.domain.model.errors import DuplicateIterationError, StoreUnavailableError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.service.clock import Clock
from itertrack.domain.service.spool_rules import must_wait_as_change
from itertrack.domain.service.store_ports import IterationWriter, PendingAppend, RetryPause

log = logging.getLogger("itertrack")


class SpoolingWriter(IterationWriter):
    """A PostgreSQL store's writer: the store when it answers, the spool file when it does not."""

    def __init__(
        self,
        store: EventSourcedStore,
        spool: Spool,
        *,
        started_offline: bool,
        forward: bool,
        clock: Clock,
        retry: RetryPause,
        max_attempts: int,
    ) -> None:
        self.store = store
        self.spool = spool
        self.state = SpoolState(store_up=not started_offline)
        self.state.spooling = spool.count() > 0 or started_offline
        self.forwarder = SpoolForwarder(
            store, spool, self.state, clock=clock, retry=retry, max_attempts=max_attempts, auto=forward
        )
        # How many changes went to the spool as events, and as changes (their version unknown).
        self.changes_spooled = 0
        self.changes_deferred = 0
        self.state.unforwarded = spool.count() > 0  # stuck changes aside: those hold nothing up
        if self.state.unforwarded or started_offline:
            self.forwarder.start()

    def watch(self, forgotten: Callable[[UUID], None], saved: Callable[[int], None]) -> None:
        self.forwarder.forgotten = forgotten
        self.forwarder.saved = saved

    def append(
        self,
        events: Sequence[Iteration.Event],
        change: Change | None,
        record: IterationRecord | None,
        base: UUID | None = None,
    ) -> int | None:
        iteration_id = events[0].originator_id
        state = self.state
        with state.lock:
            waiting = self.spool.count(iteration_id) if state.spooling else 0
            if change is None and waiting:
                # A start of an iteration whose changes wait here: the id is taken (as online, where the
                # store refuses it), whatever the store says when it answers.
                raise DuplicateIterationError(iteration_id)
            # While the store is known to be down nothing waits on the network (the forwarder probes it),
            # even when the spool is empty (an offline start, or a flush that drained it meanwhile).
            spool_it = not state.store_up or (state.spooling and waiting > 0)
            if spool_it:
                self._spool(iteration_id, events, change, record, base)
        if spool_it:
            self.forwarder.start()
            return None
        try:
            notification_id = self.store.append(events, record)
        except StoreUnavailableError as e:
            log.debug("store unavailable, spooling a change of %s: %s", iteration_id, e)
            try:
                with state.lock:
                    state.went_down(e)
                    # Marks the spool in use only once it holds the change: a spool that could not keep it
                    # (a full or read-only file system) is not consulted by later calls for nothing.
                    self._spool(iteration_id, events, change, record, base)
            finally:
                # Whatever the spool did (a full or read-only file system raises here), the forwarder
                # probes the store until it answers: a host never stays cut off after the store is back.
                self.forwarder.start()
            return None
        state.came_back()
        return notification_id

    def append_many(self, changes: Sequence[PendingAppend]) -> list[int | Exception | None]:
        """As `append` for each change; while the store answers and nothing waits, in shared transactions.

        A change whose commit the store did not answer is spooled, as `append` does (its outcome is then None).
        """
        if not self.writes_through():
            return super().append_many(changes)  # one by one: each joins the spool, or goes through, as append decides
        outcomes = self.store.append_many([(events, record, encoded) for events, _, record, _, encoded in changes])
        answered = went_down = False
        kept: list[int | Exception | None] = []
        for (events, change, record, base, _), outcome in zip(changes, outcomes, strict=True):
            if not isinstance(outcome, StoreUnavailableError):
                answered = answered or not isinstance(outcome, Exception)
                kept.append(outcome)
                continue
            went_down = True
            iteration_id = events[0].originator_id
            log.debug("store unavailable, spooling a change of %s: %s", iteration_id, outcome)
            try:
                with self.state.lock:
                    self.state.went_down(outcome)
                    self._spool(iteration_id, events, change, record, base)
            except Exception as e:  # the spool could not keep it (a full or read-only file system)
                kept.append(e)
            else:
                kept.append(None)
            finally:
                self.forwarder.start()
        if answered and not went_down:  # a later group of the batch may have met the outage: it stays down
            self.state.came_back()
        return kept

    def writes_through(self) -> bool:
        return not self.state.spooling and self.state.store_up

    def _spool(
        self,
        iteration_id: UUID,
        events: Sequence[Iteration.Event],
        change: Change | None,
        record: IterationRecord | None,
        base: UUID | None,
    ) -> None:
        # The change itself waits beside its events: if another writer takes their versions meanwhile (or
        # the state they were made on is not the stored one), the forwarder applies it again on the stored
        # iteration instead of giving up on it.
        command = None if change is None else DeferredChange(at=events[0].timestamp, change=change)
        self.spool.add(iteration_id, self.store.stored(events), record, command, base)
        self.state.spooling = self.state.unforwarded = True
        self.changes_spooled += 1

    def must_keep_change(self, iteration_id: UUID, cached: bool) -> bool:
        if not self.state.spooling and self.state.store_up:
            return False
        waiting, as_changes = self.spool.counts(iteration_id)
        return must_wait_as_change(
            waiting=waiting, waiting_as_changes=as_changes, cached=cached, store_answers=self.state.store_up
        )

    def keep_change(
        self, iteration_id: UUID, change: Change, at: datetime, record: IterationRecord | None, *, outage: bool
    ) -> bool:
        deferred = DeferredChange(at=at, change=change)
        if outage:
            self.state.went_down(f"a change of {iteration_id} is kept until it answers")
        try:
            with self.state.lock:
                self.spool.add_deferred(iteration_id, deferred, record)
                self.state.spooling = self.state.unforwarded = True
                self.changes_deferred += 1
        finally:
            self.forwarder.start()  # probes the store again even if the spool could not keep the change
        return True

    def waiting(self, iteration_id: UUID) -> int:
        return self.spool.count(iteration_id) if self.state.spooling else 0  # stuck changes set aside: not waiting

    def store_answers(self) -> bool:
        return self.state.store_up

    def tolerates_outage(self) -> bool:
        return True

    def flush(self) -> SpoolFlush:
        """Forward what waits now, in the caller's thread (`itertrack spool flush`)."""
        return self.forwarder.flush()

    def close(self) -> None:
        self.forwarder.stop()
        self.spool.close()
