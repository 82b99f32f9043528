"""Forwarding the spool: the changes that waited while the store was away reach it, in order, exactly once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from uuid import UUID

from itertrack.adapters.spool.port import Spool, SpooledChange
from itertrack.adapters.spool.state import FlushTally, SpoolFlush, SpoolState
from itertrack.adapters.store.event_store import EventSourcedStore
from itertrack.domain.model.changes import DeferredChange
from itertrack.domain.model.errors import IterationError, StoreUnavailableError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.service.clock import Clock
from itertrack.domain.service.spool_rules import already_applied
from itertrack.domain.service.store_ports import RetryPause, VersionTakenError

log = logging.getLogger("itertrack")

# How long a deferred change waits for its iteration to reach the store (another process's spool may
# still hold its start) before it is reported as stuck.
_MISSING_ITERATION_GRACE_S = 600.0
# Spooled changes read per page; plain event changes of a page go to the store in one transaction.
_FORWARD_BATCH = 200
# How long stop() waits for the forwarder to finish the change in hand (a connect may take connect_timeout).
_STOP_WAIT_S = 10.0


class SpoolForwarder:
    """A background thread (or `flush()`) that empties the spool into the store, oldest change first."""

    def __init__(
        self,
        store: EventSourcedStore,
        spool: Spool,
        state: SpoolState,
        *,
        clock: Clock,
        retry: RetryPause,
        max_attempts: int,
        auto: bool = True,
    ) -> None:
        self.store = store
        self.spool = spool
        self.state = state
        self.clock = clock
        self.retry = retry
        self.max_attempts = max_attempts
        self.auto = auto
        self.closing = threading.Event()
        self.failures = 0
        # Told when a forward moved an iteration past the host's copy, and after each forward's commit.
        self.forgotten: Callable[[UUID], None] = store.evict
        self.saved: Callable[[int], None] = lambda notification_id: None
        self._thread: threading.Thread | None = None
        self._missing_since: dict[int, datetime] = {}  # deferred changes whose iteration the store lacked, since

    def start(self) -> None:
        """Start the background thread unless it runs (or forwarding is manual)."""
        if not self.auto:
            return
        with self.state.lock:
            # A forwarder that is running has not yet decided to stop (it decides under this lock).
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="itertrack-forwarder", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Let the thread finish the change in hand and stop; what is left waits in the spool."""
        self.closing.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_STOP_WAIT_S)

    def _loop(self) -> None:
        try:
            self._until_drained()
        finally:
            with self.state.lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _until_drained(self) -> None:
        delay = 0.05
        while not self.closing.is_set():
            try:
                flushed = self.flush()
                if not self.state.store_up:
                    # Nothing was sent, so nothing proved the store back: ask it (a failure is handled below).
                    self.store.record(UUID(int=0))
                    self.state.store_up = True
                with self.state.lock:
                    # Stop only if nothing joined the spool since: a change spooled after this check
                    # finds no forwarder and starts one.
                    if not self.state.unforwarded and self.state.store_up:
                        self._thread = None
                        return
                if flushed.forwarded or flushed.already_stored:
                    delay = 0.05  # the store answers: go on at once with what arrived meanwhile
                    continue
            except StoreUnavailableError:
                self.failures += 1
                self.state.store_up = False  # the host's calls stop waiting on the network until it answers
                # After a restart every pooled connection is dead: drop them now rather than fail once per each.
                self.store.drop_broken_connections()
            except Exception:
                self.failures += 1
                log.warning("spool forwarding failed; will retry", exc_info=True)
            self.closing.wait(delay)
            delay = min(delay * 2, 2.0)

    def flush(self) -> SpoolFlush:
        """Forward every waiting change the store will take, oldest first; returns what happened.

        Idempotent: a change the store already holds (a forward that committed before a crash) is
        recognised by its (id, version) rows, or for a deferred change by its event id, and simply
        removed. A change that meets someone else's events at its versions, or that the stored iteration
        refuses, is kept as stuck, with later changes of that iteration behind it.
        Raises `StoreUnavailableError` when the store (or the spool file) cannot be used.
        """
        tally = FlushTally()
        last = 0
        while not self.closing.is_set():
            batch = self.spool.waiting(_FORWARD_BATCH, after=last)
            if not batch:
                break
            last = self._forward_page(batch, tally)
            if tally.answered:
                self.state.store_up = True  # it answered: the host's new work may go straight to it
        with self.state.lock:
            # Changes added meanwhile, and those not behind a stuck one, keep the spool in use.
            movable = self.movable_waiting(tally.blocked)
            self.state.unforwarded = movable > 0
            self.state.spooling = self.spool.count() > 0
        if tally.last_notification:
            # Read models refreshed on save learn of the forwarded changes too, not only at the host's next save.
            self.saved(tally.last_notification)
        if (tally.forwarded or tally.already) and not self.state.spooling:
            self.spool.reclaim()  # this pass emptied the spool: its file shrinks back
        return SpoolFlush(
            forwarded=tally.forwarded,
            already_stored=tally.already,
            stuck=self.spool.count() - movable,
            waiting=movable,
        )

    def _forward_page(self, batch: list[SpooledChange], tally: FlushTally) -> int:
        """Forward one page of waiting changes; the id of the last one looked at."""
        last = 0
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
        return last

    def movable_waiting(self, blocked: set[UUID]) -> int:
        """Waiting changes the forwarder can still send: neither stuck nor behind a stuck change of their iteration."""
        movable = 0
        for iid, stuck in self.spool.heads():
            if stuck or iid in blocked:
                blocked.add(iid)
            else:
                movable += 1
        return movable

    def _forward_run(self, run: list[SpooledChange], tally: FlushTally) -> None:
        """Send plain event changes in one transaction; if any meets stored rows, send them one by one."""
        if len(run) > 1:
            try:
                last = self.store.insert([e for change in run for e in change.events])
            except VersionTakenError:
                pass  # some change is already stored, or stuck: find which, in order
            else:
                self.spool.remove(*(change.id for change in run))
                tally.forwarded += len(run)
                tally.answered = True
                tally.appended(last)
                return
        for change in run:
            if change.iteration_id not in tally.blocked:
                tally.count(change, self._forward_events(change, tally))

    def _forward_events(self, change: SpooledChange, tally: FlushTally) -> str:
        """Append a spooled change's events: "forwarded", "already" (the store holds exactly them) or "stuck"."""
        try:
            last = self.store.insert(change.events, change.record)
        except VersionTakenError:
            if self.store.holds_stored(change.iteration_id, change.events):
                self.spool.remove(change.id)
                return "already"
            self.spool.mark_stuck(change.id, "another writer holds these versions: resolve by hand")
            self.forgotten(change.iteration_id)
            return "stuck"
        self.spool.remove(change.id)
        tally.appended(last)
        return "forwarded"

    def _forward_deferred(self, change: SpooledChange, tally: FlushTally) -> str:
        """Apply a deferred change to the stored iteration: "forwarded", "already" (its event is stored) or "stuck".

        Its event id makes this idempotent: if a forward committed before a crash, the stored history
        holds an event with that id and the change is only removed. A change the iteration refuses (it
        finished meanwhile, the record belongs to another iteration, ...) is kept as stuck, with the reason.
        """
        assert change.deferred is not None
        # Not under the host's iteration lock: while this change waits, the host holds no copy of the
        # iteration and keeps its changes as changes too (the writer decides), and the lock's stripe is
        # shared with other iterations, whose host calls must not wait on this forward's network calls.
        for attempt in range(1, self.max_attempts + 1):
            # As in the tracker: after a lost race, queue on the store's per-iteration lock.
            with self.store.serialised(change.iteration_id) if attempt > 1 else nullcontext():
                outcome = self._apply_deferred(change, change.deferred, tally)
            if outcome is not None:
                return outcome
            if attempt < self.max_attempts:
                self.retry.pause(attempt)
        return "waiting"

    def _apply_deferred(self, change: SpooledChange, deferred: DeferredChange, tally: FlushTally) -> str | None:
        """One attempt of `_forward_deferred`; None when another writer appended first."""
        iid = change.iteration_id
        events = self.store.events(iid)
        if not events:
            return self._missing(change)
        self._missing_since.pop(change.id, None)
        if already_applied((e.event_id for e in events), deferred.change.event_id):
            self.spool.remove(change.id)
            self.forgotten(iid)
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
        try:
            last = self.store.append(iteration.take_events(), change.record)
        except VersionTakenError:
            return None  # another writer appended meanwhile (or a forward of ours committed): look again
        self.spool.remove(change.id)
        self.forgotten(iid)
        tally.appended(last)
        return "forwarded"

    def _missing(self, change: SpooledChange) -> str:
        """The deferred change's iteration is not in the store: wait for it, then report the change as stuck.

        Perhaps another process started it and its own spool has not reached the store yet; the wait
        counts from when this forwarder first found the store answering without it.
        """
        now = self.clock.now()
        waited = (now - self._missing_since.setdefault(change.id, now)).total_seconds()
        if waited < _MISSING_ITERATION_GRACE_S:
            return "waiting"
        self._missing_since.pop(change.id, None)
        self.spool.mark_stuck(
            change.id, f"iteration {change.iteration_id} is not in the store (looked for {waited:.0f} s)"
        )
        return "stuck"
