"""Forwarding the spool: the changes that waited while the store was away reach it, in order, exactly once."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    EventStore,
    IntegrityError,
    InterfaceError,
    Mapper,
    OperationalError,
    StoredEvent,
)
from pydantic import BaseModel, ConfigDict

from itertrack.domain.model.changes import DeferredChange
from itertrack.domain.model.errors import IterationError, StoreUnavailableError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.service.clock import Clock
from itertrack.domain.service.ports import IterationRecordStore
from itertrack.domain.service.spool import Spool, SpooledChange
from itertrack.domain.service.unavailable import store_unavailable_as_typed_error

log = logging.getLogger("itertrack")

_BACKOFF_BASE_S = 0.002
_BACKOFF_CAP_S = 0.25
# How long a deferred change waits for its iteration to reach the store (another process's spool may
# still hold its start) before it is reported as stuck.
_MISSING_ITERATION_GRACE_S = 600.0
# Spooled changes read per page; plain event changes of a page go to the store in one transaction.
_FORWARD_BATCH = 200


def retry_pause(attempt: int) -> float:
    """Seconds to wait before retrying after losing a version race `attempt` times (jittered, capped)."""
    return random.uniform(0.0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt))


class SpoolFlush(BaseModel):
    """What one pass of forwarding the spool did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    forwarded: int
    already_stored: int
    stuck: int
    waiting: int


@dataclass
class _FlushTally:
    """What one pass of forwarding has done so far, and which iterations it must not touch again."""

    forwarded: int = 0
    already: int = 0
    blocked: set[UUID] = field(default_factory=set)  # behind a stuck change: waits for a person
    later: set[UUID] = field(default_factory=set)  # lost every race this pass: the next pass tries again
    last_notification: int = 0  # the highest notification id this pass appended
    answered: bool = False  # the store answered a forward (took it, or refused it for a reason of its own)

    def appended(self, notification_ids: Sequence[int] | None) -> None:
        if notification_ids:
            self.last_notification = max(self.last_notification, *notification_ids)

    def count(self, change: SpooledChange, outcome: str) -> None:
        self.answered = True
        if outcome == "forwarded":
            self.forwarded += 1
        elif outcome == "already":
            self.already += 1
        elif outcome == "stuck":
            self.blocked.add(change.iteration_id)
        else:
            self.later.add(change.iteration_id)


class SpoolForwarding:
    """The tracker's forwarder: a background thread (or `flush_spool()`) that empties the spool into the store.

    A mixin of `PerformanceTracker`, which provides the attributes declared here and decides what is
    spooled; this class decides what happens to a spooled change once the store answers.
    """

    # Provided by PerformanceTracker (and eventsourcing's Application).
    spool: Spool | None
    records: IterationRecordStore
    recorder: ApplicationRecorder
    events: EventStore[UUID]
    mapper: Mapper[UUID]
    clock: Clock
    closing: threading.Event
    max_attempts: int
    forward_failures: int
    _spool_lock: threading.Lock
    _spooling: bool
    _unforwarded: bool
    _store_up: bool
    _forwarder: threading.Thread | None
    _missing_since: dict[int, datetime]  # deferred changes whose iteration the store did not have, since when
    _auto_forward: bool

    def _lock(self, iteration_id: UUID) -> threading.Lock:
        raise NotImplementedError

    def _evict(self, iteration_id: UUID) -> None:
        raise NotImplementedError

    def _tell_save_listeners(self, notification_id: int) -> None:
        raise NotImplementedError

    def _evict_between_changes(self, iteration_id: UUID) -> None:
        """Drop the host's cached copy, but not while a host thread is changing it (brief: no network inside)."""
        with self._lock(iteration_id):
            self._evict(iteration_id)

    def _start_forwarder(self) -> None:
        if not self._auto_forward:
            return
        with self._spool_lock:
            # A forwarder that is running has not yet decided to stop (it decides under this lock).
            if self._forwarder is not None:
                return
            self._forwarder = threading.Thread(target=self._forward_loop, name="itertrack-forwarder", daemon=True)
            self._forwarder.start()

    def _forward_loop(self) -> None:
        try:
            self._forward_until_drained()
        finally:
            with self._spool_lock:
                if self._forwarder is threading.current_thread():
                    self._forwarder = None

    def _forward_until_drained(self) -> None:
        delay = 0.05
        while not self.closing.is_set():
            try:
                flushed = self.flush_spool()
                if not self._store_up:
                    # Nothing was sent, so nothing proved the store back: ask it (a failure is handled below).
                    self.records.select_iteration_record(UUID(int=0))
                    self._store_up = True
                with self._spool_lock:
                    # Stop only if nothing joined the spool since: a change spooled after this check
                    # finds no forwarder and starts one.
                    if not self._unforwarded and self._store_up:
                        self._forwarder = None
                        return
                if flushed.forwarded or flushed.already_stored:
                    delay = 0.05  # the store answers: go on at once with what arrived meanwhile
                    continue
            except (OperationalError, InterfaceError, StoreUnavailableError):
                self.forward_failures += 1
                self._store_up = False  # the host's calls stop waiting on the network until it answers
                # After a restart every pooled connection is dead: drop them now rather than fail once per each.
                self.records.drop_broken_connections()
            except Exception:
                self.forward_failures += 1
                log.warning("spool forwarding failed; will retry", exc_info=True)
            self.closing.wait(delay)
            delay = min(delay * 2, 2.0)

    @store_unavailable_as_typed_error()
    def flush_spool(self) -> SpoolFlush:  # noqa: C901  # spool order and per-iteration blocking rules read as one loop
        """Forward every waiting change the store will take, oldest first; returns what happened.

        Idempotent: a change the store already holds (a forward that committed before a crash) is
        recognised by its (id, version) rows, or for a deferred change by its event id, and simply
        removed. A change that meets someone else's events at its versions, or that the stored iteration
        refuses, is kept as stuck, with later changes of that iteration behind it.
        """
        if self.spool is None:
            return SpoolFlush(forwarded=0, already_stored=0, stuck=0, waiting=0)
        tally = _FlushTally()
        last = 0
        while not self.closing.is_set():
            batch = self.spool.waiting(_FORWARD_BATCH, after=last)
            if not batch:
                break
            run: list[SpooledChange] = []  # plain event changes, sent together
            for change in batch:
                if self.closing.is_set():
                    break  # closing: what is left waits in the spool for the next tracker
                last = change.id
                if change.stuck is not None or change.iteration_id in tally.blocked:
                    tally.blocked.add(change.iteration_id)
                elif change.iteration_id in tally.later:
                    continue
                elif change.deferred is None and change.record is None:
                    run.append(change)
                else:
                    # Earlier changes (maybe of this iteration) land first; then this one alone,
                    # unless one of them just got stuck or must wait.
                    self._forward_run(run, tally)
                    run = []
                    if change.iteration_id not in tally.blocked and change.iteration_id not in tally.later:
                        forward = self._forward_deferred if change.deferred is not None else self._forward_events
                        tally.count(change, forward(change, tally))
            self._forward_run(run, tally)
            if tally.answered:
                self._store_up = True  # it answered: the host's new work may go straight to it
        with self._spool_lock:
            # Changes added meanwhile, and those not behind a stuck one, keep the spool in use.
            movable = self._movable_waiting(tally.blocked)
            self._unforwarded = movable > 0
            self._spooling = self.spool.count() > 0
        if tally.last_notification:
            # Read models refreshed on save learn of the forwarded changes too, not only at the host's next save.
            self._tell_save_listeners(tally.last_notification)
        return SpoolFlush(
            forwarded=tally.forwarded,
            already_stored=tally.already,
            stuck=self.spool.count() - movable,
            waiting=movable,
        )

    def _movable_waiting(self, blocked: set[UUID]) -> int:
        """Waiting changes the forwarder can still send: neither stuck nor behind a stuck change of their iteration."""
        assert self.spool is not None
        movable = 0
        for iid, stuck in self.spool.heads():
            if stuck or iid in blocked:
                blocked.add(iid)
            else:
                movable += 1
        return movable

    def _forward_run(self, run: list[SpooledChange], tally: _FlushTally) -> None:
        """Send plain event changes in one transaction; if any meets stored rows, send them one by one."""
        assert self.spool is not None
        if len(run) > 1:
            try:
                ids = self.recorder.insert_events([e for change in run for e in change.events])
            except IntegrityError:
                pass  # some change is already stored, or stuck: find which, in order
            else:
                self.spool.remove(*(change.id for change in run))
                tally.forwarded += len(run)
                tally.answered = True
                tally.appended(ids)
                return
        for change in run:
            if change.iteration_id not in tally.blocked:
                tally.count(change, self._forward_events(change, tally))

    def _forward_events(self, change: SpooledChange, tally: _FlushTally) -> str:
        """Append a spooled change's events: "forwarded", "already" (the store holds exactly them) or "stuck"."""
        assert self.spool is not None
        try:
            ids = self.recorder.insert_events(list(change.events), iteration_record=change.record)
        except IntegrityError:
            if self._holds(change.iteration_id, change.events):
                self.spool.remove(change.id)
                return "already"
            self.spool.mark_stuck(change.id, "another writer holds these versions: resolve by hand")
            self._evict_between_changes(change.iteration_id)
            return "stuck"
        self.spool.remove(change.id)
        tally.appended(ids)
        return "forwarded"

    def _forward_deferred(self, change: SpooledChange, tally: _FlushTally) -> str:
        """Apply a deferred change to the stored iteration: "forwarded", "already" (its event is stored) or "stuck".

        Its event id makes this idempotent: if a forward committed before a crash, the stored history
        holds an event with that id and the change is only removed. A change the iteration refuses (it
        finished meanwhile, the record belongs to another iteration, ...) is kept as stuck, with the reason.
        """
        assert self.spool is not None
        assert change.deferred is not None
        iid, deferred = change.iteration_id, change.deferred
        # Not under the iteration's lock: while this change waits, the host holds no copy of the iteration
        # and defers its changes (the spool decides), and the lock's stripe is shared with other iterations,
        # whose host calls must not wait on this forward's network calls.
        for attempt in range(1, self.max_attempts + 1):
            # As in _change: after a lost race, queue on the store's per-iteration lock.
            with self.records.serialised(iid) if attempt > 1 else nullcontext():
                outcome = self._apply_deferred(change, deferred, tally)
            if outcome is not None:
                return outcome
            if attempt < self.max_attempts:
                time.sleep(retry_pause(attempt))
        return "waiting"

    def _apply_deferred(self, change: SpooledChange, deferred: DeferredChange, tally: _FlushTally) -> str | None:
        """One attempt of `_forward_deferred`; None when another writer appended first."""
        assert self.spool is not None
        iid = change.iteration_id
        events = cast(list[Iteration.Event], list(self.events.get(iid)))
        if not events:
            # Perhaps another process started it and its own spool has not reached the store yet: wait,
            # counting from when this forwarder first found the store answering without it.
            now = self.clock.now()
            waited = (now - self._missing_since.setdefault(change.id, now)).total_seconds()
            if waited < _MISSING_ITERATION_GRACE_S:
                return "waiting"
            self._missing_since.pop(change.id, None)
            self.spool.mark_stuck(change.id, f"iteration {iid} is not in the store (looked for {waited:.0f} s)")
            return "stuck"
        self._missing_since.pop(change.id, None)
        if any(e.event_id == deferred.change.event_id for e in events):
            self.spool.remove(change.id)
            self._evict_between_changes(iid)
            return "already"
        iteration: Iteration | None = None
        for event in events:
            iteration = event.mutate(iteration)
        assert iteration is not None
        try:
            deferred.change.apply(iteration, max(deferred.at, iteration.modified_on))
        except IterationError as e:
            self.spool.mark_stuck(change.id, f"refused by the stored iteration: {e}")
            return "stuck"
        stored = [self.mapper.to_stored_event(e) for e in iteration.collect_events()]
        try:
            ids = self.recorder.insert_events(stored, iteration_record=change.record)
        except IntegrityError:
            return None  # another writer appended meanwhile (or a forward of ours committed): look again
        self.spool.remove(change.id)
        self._evict_between_changes(iid)
        tally.appended(ids)
        return "forwarded"

    def _holds(self, iteration_id: UUID, events: Sequence[StoredEvent]) -> bool:
        """Whether the store holds exactly these rows at their versions (each carries a unique event id).

        A commit whose acknowledgement was lost (or a spooled change forwarded just before a crash)
        meets its own rows on the (id, version) key: that is success, not a conflict to re-apply.
        """
        first, last = events[0].originator_version, events[-1].originator_version
        stored = self.recorder.select_events(iteration_id, gt=first - 1, lte=last)
        return [(s.originator_version, s.topic, s.state) for s in stored] == [
            (s.originator_version, s.topic, s.state) for s in events
        ]
