"""Forwarding the spool: the changes that waited while the store was away reach it, in order, exactly once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, cast
from uuid import UUID

from itertrack.adapters.spool.failure_log import RepeatedFailureLog
from itertrack.adapters.spool.port import Spool, SpooledChange, SpoolUnusableError
from itertrack.adapters.spool.state import FlushTally, SpoolFlush, SpoolState
from itertrack.adapters.store.event_store import EventSourcedStore
from itertrack.domain.model.errors import IterationError, StoreUnavailableError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.service.clock import Clock
from itertrack.domain.service.spool_rules import already_applied
from itertrack.domain.service.store_ports import RetryPause, VersionTakenError

log = logging.getLogger("itertrack")

# How long a deferred change waits for its iteration to reach the store (another process's spool may
# still hold its start) before it is reported as stuck.
_MISSING_ITERATION_GRACE_S = 600.0
# Spooled changes read per page; plain event changes of a page go to the store in one transaction.
_FORWARD_BATCH = 200
# Stored iterations the forwarder keeps a copy of between passes (each changes applied onto it again).
_COPIES_KEPT = 32
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
        # A failure that lasts (a privilege the store's role lacks) is one warning, not one per retry.
        self._failure_log = RepeatedFailureLog(
            log, "spool forwarding", then="will retry, and the changes stay in the spool meanwhile"
        )
        # Told when a forward moved an iteration past the host's copy, and after each forward's commit.
        self.forgotten: Callable[[UUID], None] = store.evict
        self.saved: Callable[[int], None] = lambda notification_id: None
        self._thread: threading.Thread | None = None
        self._missing_since: dict[UUID, datetime] = {}  # iterations the store lacked, since
        self._copies: dict[UUID, _StoredCopy] = {}  # stored iterations, least recently used first
        # Iterations whose spooled start was a duplicate: its spool id and the id of the last event made on it
        # (the host's copy of the duplicate ended there). Kept across passes: a change the host made on its
        # duplicate may be forwarded by a later pass than the one that set the duplicate aside.
        self._duplicates: dict[UUID, tuple[int, UUID]] = {}

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
                flushed = self._pass()
                with self.state.lock:
                    # Stop only if nothing joined the spool since: a change spooled after this check
                    # finds no forwarder and starts one.
                    if not self.state.unforwarded and self.state.store_up:
                        self._thread = None
                        return
                if flushed.forwarded or flushed.already_stored:
                    delay = 0.05  # the store answers: go on at once with what arrived meanwhile
                    continue
            except SpoolUnusableError as e:
                if self._spool_failed(e):
                    return
            except StoreUnavailableError:
                self.failures += 1
                # After a restart every pooled connection is dead: drop them now rather than fail once per each.
                self.store.drop_broken_connections()
                # Then ask before host calls are told the store is away (they stop waiting on it, and uncached
                # reads fail at once): a pooled connection that a restart closed is not an outage, and a host whose
                # own change just went through should not be refused for this loop's back-off (up to 2 s).
                if not self._answers():
                    self.state.went_down("the spool's forwarder could not reach it")
            except Exception as e:
                self.failures += 1
                self._failure_log.failed(e)
            self.closing.wait(delay)
            delay = min(delay * 2, 2.0)

    def _pass(self) -> SpoolFlush:
        """One pass of the loop: flush, and ask the store when nothing proved it back; raises what they raise."""
        flushed = self.flush()
        if not self.state.store_up:
            # Nothing was sent, so nothing proved the store back: ask it (a failure is handled by the loop).
            self._probe()
        if not flushed.forwarded_elsewhere and not self.closing.is_set():
            self._failure_log.recovered()  # this pass went through (not another process's, not cut short)
        return flushed

    def _spool_failed(self, error: SpoolUnusableError) -> bool:
        """The spool failed, not the store: ask the store, so the host's other iterations go on to it (only an
        iteration with changes waiting here waits for the spool). True when the forwarder may stop: the store
        answers and nothing of this process waits in the spool (it could not keep the change at all)."""
        self.failures += 1
        log.info("the spool cannot be forwarded now; will retry: %s", error)
        if not self._answers():
            self.state.went_down("the spool's forwarder could not reach it")
            return False
        with self.state.lock:
            if self.state.unforwarded:
                return False
            self._thread = None
            return True

    def _answers(self) -> bool:
        """Whether the store answers: `_probe`, and when that fails, once more after the pool's broken
        connections are dropped (after a restart every pooled connection is dead, and one of them failing is not
        an outage)."""
        try:
            self._probe()
        except StoreUnavailableError:
            self.store.drop_broken_connections()
        else:
            return True
        try:
            self._probe()
        except StoreUnavailableError:
            return False
        return True

    def _probe(self) -> None:
        """Ask the store whether it answers (one indexed read); `StoreUnavailableError` when it does not."""
        self.store.record(UUID(int=0))
        self.state.came_back()

    def flush(self) -> SpoolFlush:
        """Forward every waiting change the store will take, oldest first; returns what happened.

        Each iteration's changes go in the order they were made. Events whose versions follow the stored
        iteration go as they are (many iterations' in one transaction); when another writer took those
        versions meanwhile, the changes behind the events are applied again on the stored iteration, all
        of an iteration's waiting changes on one load. Idempotent: a change the store already holds (a
        forward that committed before a crash) is recognised by its event id and only removed. A change
        the stored iteration refuses (it finished meanwhile, the id was taken by another start, ...) is set
        aside as stuck with the reason, and the iteration's other changes go on without it.
        One forwarder at a time per spool file: processes sharing one take turns (two forwarding the
        same change at once, one as events and one applied again, could both land it), and a pass that
        finds another forwarding returns with `forwarded_elsewhere`.
        Raises `StoreUnavailableError` when the store cannot be used, `SpoolUnusableError` (a subclass) when the
        spool file cannot.
        """
        tally = FlushTally()
        with self.spool.forwarding() as ours:
            last = 0
            while ours and not self.closing.is_set():
                batch = self.spool.waiting(_FORWARD_BATCH, after=last, movable=True)
                if not batch:
                    break
                last = batch[-1].id
                self._forward_page(batch, tally)
                if tally.answered:
                    self.state.came_back()  # it answered: the host's new work may go straight to it
        with self.state.lock:
            # Changes added meanwhile keep the spool in use; stuck ones hold nothing up.
            movable = self.spool.count()
            self.state.unforwarded = self.state.spooling = movable > 0
        if tally.last_notification:
            # Read models refreshed on save learn of the forwarded changes too, not only at the host's next save.
            self.saved(tally.last_notification)
        if (tally.forwarded or tally.already) and not self.state.spooling:
            self.spool.reclaim()  # this pass emptied the spool: its file shrinks back
        return SpoolFlush(
            forwarded_elsewhere=not ours,
            forwarded=tally.forwarded,
            already_stored=tally.already,
            set_aside=tally.set_aside,
            stuck=self.spool.stuck_count(),
            waiting=movable,
        )

    def _forward_page(self, batch: list[SpooledChange], tally: FlushTally) -> None:
        """Forward one page of waiting changes, each iteration's in order."""
        groups: dict[UUID, list[SpooledChange]] = {}
        for change in batch:
            if change.iteration_id not in tally.later:  # lost every race this pass: the next pass tries again
                groups.setdefault(change.iteration_id, []).append(change)
        tips = self._send_runs(groups, tally)
        for iid, changes in groups.items():
            if self.closing.is_set():
                return  # closing: what is left waits in the spool for the next tracker
            if changes:
                self._forward_iteration(iid, changes, tips.get(iid), tally)

    def _send_runs(self, groups: dict[UUID, list[SpooledChange]], tally: FlushTally) -> dict[UUID, _Tip]:
        """Send, in one transaction, each iteration's leading events that were made on the stored iteration.

        Removes what was sent from `groups`; returns the stored tip of each iteration looked at.
        """
        tips: dict[UUID, _Tip] = {}
        runs: dict[UUID, list[SpooledChange]] = {}
        for iid, changes in groups.items():
            # After a duplicate start, events that follow it were made on it: they never go as they are.
            if changes[0].events and iid not in self._duplicates:
                tips[iid] = _Tip(*self.store.tip(iid))
                run = self._run_on(tips[iid], changes)
                if run:
                    runs[iid] = run
        sent = [change for run in runs.values() for change in run]
        if not sent:
            return tips
        try:
            last = self.store.insert([e for change in sent for e in change.events])
        except VersionTakenError:
            return tips  # another writer appended to one of them meanwhile: each goes on its own below
        self.spool.remove(*(change.id for change in sent))
        tally.forwarded += len(sent)
        tally.answered = True
        tally.appended(last)
        for iid, run in runs.items():
            del groups[iid][: len(run)]
            tips[iid] = self._tip_after(run[-1])
        return tips

    def _forward_iteration(self, iid: UUID, changes: list[SpooledChange], tip: _Tip | None, tally: FlushTally) -> None:
        """Forward one iteration's waiting changes of this page, in order: as events while they were made on
        the stored iteration, then by applying the changes on it."""
        while changes and tip is not None and _follows(tip, changes[0]):
            change = changes[0]
            try:
                last = self.store.insert(change.events, change.record)
            except VersionTakenError:
                break  # another writer took the version meanwhile: apply the changes again, below
            self.spool.remove(change.id)
            tally.forwarded += 1
            tally.answered = True
            tally.appended(last)
            tip = self._tip_after(change)
            changes = changes[1:]
        if changes:
            self._reapply(iid, changes, tally)

    def _run_on(self, tip: _Tip, changes: list[SpooledChange]) -> list[SpooledChange]:
        """The leading changes made one on another from `tip` (none with a record: that goes alone)."""
        run: list[SpooledChange] = []
        for change in changes:
            if change.record is not None or not _follows(tip, change):
                break
            run.append(change)
            tip = self._tip_after(change)
        return run

    def _tip_after(self, change: SpooledChange) -> _Tip:
        """The iteration's tip once the change's events are stored."""
        intent = change.intent
        last = (
            intent.change.event_id
            if intent is not None
            else cast(Iteration.Event, self.store.mapper.to_domain_event(change.events[-1])).event_id
        )
        return _Tip(change.events[-1].originator_version, last)

    def _reapply(self, iid: UUID, changes: list[SpooledChange], tally: FlushTally) -> None:
        """Apply the changes on the stored iteration, on one load, retrying lost races as the tracker does."""
        for attempt in range(1, self.max_attempts + 1):
            # Not under the host's iteration lock: while these changes wait, the host holds no copy it would
            # write from (the writer routes its changes to the spool), and the lock's stripe is shared with
            # other iterations, whose host calls must not wait on this forward's network calls.
            # After a lost race, queue on the store's per-iteration lock, as the tracker does.
            with self.store.serialised(iid) if attempt > 1 else nullcontext():
                if self._reapply_once(iid, changes, tally):
                    return
            if attempt < self.max_attempts:
                self.retry.pause(attempt)
        tally.later.add(iid)

    def _reapply_once(self, iid: UUID, changes: list[SpooledChange], tally: FlushTally) -> bool:
        """One attempt of `_reapply`; False when another writer appended first (the caller looks again)."""
        copy = self._stored_copy(iid)
        if copy is None:
            self._missing(iid, changes, tally)
            return True
        try:
            outcome = _Outcome(duplicate=self._duplicates.get(iid))
            for change in changes:
                self._apply_one(copy, change, outcome)
            for events, record in outcome.segments():
                # One transaction per saving step's record (a record is written with its event); an earlier
                # segment that committed before a lost race is recognised by its event ids next time.
                tally.appended(self.store.append(events, record))
                copy.event_ids.update(e.event_id for e in events)
        except VersionTakenError:
            self._copies.pop(iid, None)
            return False
        except BaseException:
            self._copies.pop(iid, None)
            raise
        # The host's copy may hold these changes as it made them: it is dropped before they leave the spool,
        # so a host change made meanwhile is spooled behind them or made on the stored iteration, never
        # written on that copy (which a refused change and another writer's event can leave at the stored
        # version).
        self.forgotten(iid)
        for change, reason in outcome.refused:
            log.warning("spooled change #%d of iteration %s set aside: %s", change.id, iid, reason)
            self.spool.mark_stuck(change.id, reason)
        self.spool.remove(*(change.id for change in outcome.applied + outcome.already))
        self._missing_since.pop(iid, None)
        if outcome.duplicate is not None:
            self._duplicates[iid] = outcome.duplicate
        tally.forwarded += len(outcome.applied)
        tally.already += len(outcome.already)
        tally.set_aside += len(outcome.refused)
        tally.answered = True
        return True

    def _apply_one(self, copy: _StoredCopy, change: SpooledChange, outcome: _Outcome) -> None:
        """Apply one waiting change to the forwarder's copy of the stored iteration, noting what became of it."""
        intent = change.intent
        event_ids = (
            [intent.change.event_id]
            if intent is not None
            else [cast(Iteration.Event, self.store.mapper.to_domain_event(e)).event_id for e in change.events]
        )
        if event_ids and all(
            already_applied(copy.event_ids, event_id) or already_applied(outcome.event_ids, event_id)
            for event_id in event_ids
        ):
            outcome.already.append(change)  # stored, or kept twice in the spool and applied just above
            return
        iteration = copy.iteration
        if outcome.made_on_duplicate(change, event_ids[-1] if event_ids else None):
            return
        if intent is None:
            outcome.refused.append((change, _why_taken(iteration, change)))
            if _is_start(change):
                outcome.duplicate = (change.id, event_ids[-1])
            return
        try:
            intent.change.apply(iteration, max(intent.at, iteration.modified_on))
        except IterationError as e:
            outcome.refused.append((change, f"refused by the stored iteration: {e}"))
            return
        outcome.applied.append(change)
        events = iteration.take_events()
        outcome.pending.extend(events)
        outcome.event_ids.update(e.event_id for e in events)
        if change.record is not None:
            outcome.close_segment(change.record)

    def _stored_copy(self, iid: UUID) -> _StoredCopy | None:
        """The forwarder's own copy of the stored iteration, brought up to date (None when the store lacks it).

        Kept between passes, so a long iteration's history is replayed once, not once per waiting change.
        """
        copy = self._copies.pop(iid, None)
        if copy is None:
            iteration: Iteration | None = None
            events = self.store.events(iid)
            for event in events:
                iteration = event.mutate(iteration)
            if iteration is None:
                return None
            copy = _StoredCopy(iteration, {event.event_id for event in events})
        else:
            for event in self.store.events(iid, gt=copy.iteration.version):
                event.mutate(copy.iteration)
                copy.event_ids.add(event.event_id)
        self._copies[iid] = copy
        while len(self._copies) > _COPIES_KEPT:
            self._copies.pop(next(iter(self._copies)))
        return copy

    def _missing(self, iid: UUID, changes: list[SpooledChange], tally: FlushTally) -> None:
        """The iteration is not in the store: its changes wait for it, then are reported as stuck.

        Perhaps another process started it and its own spool has not reached the store yet; the wait
        counts from when this forwarder first found the store answering without it.
        """
        tally.answered = True
        now = self.clock.now()
        waited = (now - self._missing_since.setdefault(iid, now)).total_seconds()
        if waited < _MISSING_ITERATION_GRACE_S:
            tally.later.add(iid)
            return
        self._missing_since.pop(iid, None)
        reason = f"iteration {iid} is not in the store (looked for {waited:.0f} s)"
        for change in changes:
            log.warning("spooled change #%d set aside: %s", change.id, reason)
            self.spool.mark_stuck(change.id, reason)
        tally.set_aside += len(changes)


@dataclass
class _StoredCopy:
    """The forwarder's copy of a stored iteration and the ids of its stored events."""

    iteration: Iteration
    event_ids: set[UUID]


@dataclass
class _Outcome:
    """What applying an iteration's waiting changes made of each, and the events to append."""

    applied: list[SpooledChange] = field(default_factory=list)
    already: list[SpooledChange] = field(default_factory=list)
    refused: list[tuple[SpooledChange, str]] = field(default_factory=list)
    pending: list[Iteration.Event] = field(default_factory=list)
    event_ids: set[UUID] = field(default_factory=set)  # of the events applied in this attempt
    closed: list[tuple[list[Iteration.Event], IterationRecord | None]] = field(default_factory=list)
    # A start refused as a duplicate: its spool id and the id of the last event made on top of it.
    duplicate: tuple[int, UUID] | None = None

    def made_on_duplicate(self, change: SpooledChange, last_event_id: UUID | None) -> bool:
        """Whether the change's events continue a refused duplicate start (made on the host's copy of it, not
        on the stored iteration): refused with it. Told by the event it was made on, not by its version,
        which a change made on the stored iteration may share. `spool retry` applies such a change to the
        stored one."""
        if self.duplicate is None or not change.events or change.base is None or change.base != self.duplicate[1]:
            return False
        start, _ = self.duplicate
        self.refused.append((change, f"made on duplicate start #{start} of this iteration, not on the stored one"))
        self.duplicate = (start, last_event_id or change.base)
        return True

    def close_segment(self, record: IterationRecord | None) -> None:
        self.closed.append((self.pending, record))
        self.pending = []

    def segments(self) -> list[tuple[list[Iteration.Event], IterationRecord | None]]:
        """The events to append, cut after each saving step's record (appended with it)."""
        return [*self.closed, (self.pending, None)] if self.pending else list(self.closed)


class _Tip(NamedTuple):
    """An iteration's last event: its version and id (0 and None when there is none)."""

    version: int
    event_id: UUID | None


def _follows(tip: _Tip, change: SpooledChange) -> bool:
    """Whether the change's events were made on the history that ends at `tip` (its next version, and the
    event it was made on, when the spool knows it: changes spooled before the spool kept it, and starts)."""
    return (
        bool(change.events)
        and change.events[0].originator_version == tip.version + 1
        and (change.base is None or change.base == tip.event_id)
    )


def _is_start(change: SpooledChange) -> bool:
    return bool(change.events) and change.events[0].originator_version == 1


def _why_taken(iteration: Iteration, change: SpooledChange) -> str:
    """Why a change spooled as bare events (no change kept beside them) cannot land at its versions."""
    if _is_start(change):
        return (
            f"duplicate start: iteration {iteration.id} already exists (agent {iteration.agent_id!r}, "
            f"iteration {iteration.iteration_number})"
        )
    versions = ", ".join(str(e.originator_version) for e in change.events)
    return f"another writer holds versions {versions}, and this change was spooled without the change itself"
