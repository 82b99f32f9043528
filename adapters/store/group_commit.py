"""Group commit: changes that arrive while a store commit is in flight are written together in the next one.

Leader and followers: a caller that finds no commit in flight commits its change at once, alone (no timer,
no wait to gather a batch). A caller that finds one in flight queues; when that commit ends, the first
queued caller leads the next commit, with everything queued up to the bounds (changes and bytes), in one
store transaction. Every caller returns only once the transaction holding its change has committed.

A group that fails for a reason one change may have caused (a version or key conflict, a refused value)
is not anyone's failure yet: each change of it is then committed alone, once, by its own caller, so only
the change at fault gets its error. A group whose store is away (`StoreUnavailableError`) or whose outcome
is unknown (`OutcomeUnknownError`) gives that error to every caller in it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eventsourcing.persistence import StoredEvent

from itertrack.domain.model.errors import OutcomeUnknownError, StoreUnavailableError
from itertrack.domain.model.records import IterationRecord

DEFAULT_MAX_CHANGES = 256
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
# What a record adds to a change's size in the byte bound (its JSON is not rendered only to be measured).
_RECORD_BYTES = 4096

CommitOne = Callable[[Sequence[StoredEvent], IterationRecord | None], int | None]
Outcome = int | None | Exception  # a change's last notification id, or the error committing it raised
CommitMany = Callable[[Sequence[StoredEvent], Sequence[IterationRecord]], Sequence[int] | None]


@dataclass(eq=False)
class _Pending:
    """One caller's change, queued behind the commit in flight."""

    stored: Sequence[StoredEvent]
    record: IterationRecord | None
    size: int
    # Set when the change's group ended (or it was chosen to lead): made only for a change that queues.
    ready: threading.Event | None = None
    lead: list[_Pending] | None = None  # set when this caller leads the next commit (itself first)
    result: int | None = None
    error: BaseException | None = None
    alone: bool = False  # the group failed for a reason one change may have caused: commit this one alone


class GroupCommit:
    """Writes concurrent callers' changes in shared transactions; each caller gets its own outcome.

    `one(stored, record)` commits one change (the last notification id, or None); `many(stored, records)`
    commits several changes' events and records in one transaction and returns the notification ids in
    stored-event order. Both raise the store's typed errors. `bypass()` says the calling thread must commit
    on its own (it holds the store's write lock in a transaction of its own, see `serialised`).
    """

    def __init__(
        self,
        one: CommitOne,
        many: CommitMany,
        *,
        max_changes: int = DEFAULT_MAX_CHANGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        bypass: Callable[[], bool] = lambda: False,
    ) -> None:
        self._one = one
        self._many = many
        self.max_changes = max(1, max_changes)
        self.max_bytes = max(1, max_bytes)
        self._bypass = bypass
        self._lock = threading.Lock()
        self._busy = False  # a commit is in flight (its caller hands over to the queue when it ends)
        self._queue: deque[_Pending] = deque()
        # How many store transactions this committed through, and how many changes they held (for telemetry).
        self.commits = 0
        self.changes = 0

    def waiting(self) -> int:
        """How many changes wait for the commit in flight to end."""
        with self._lock:
            return len(self._queue)

    def append(self, stored: Sequence[StoredEvent], record: IterationRecord | None) -> int | None:
        """Commit one change's events (with its record) durably; its last notification id (None if it has no events).

        Returns once the transaction holding it has committed. Raises what committing it alone would raise:
        `VersionTakenError`, `StoreUnavailableError` (`OutcomeUnknownError` when its group's commit may have
        landed), `StoreConfigError` and the like.
        """
        if self._bypass():
            return self._one(stored, record)
        with self._lock:
            if self._busy:
                me = _Pending(stored, record, _size(stored, record), threading.Event())
                self._queue.append(me)
            else:
                self._busy = True
                me = None
        if me is None:
            try:
                return self._commit_alone(stored, record)
            finally:
                self._hand_over()
        try:
            _ready(me).wait()
        except BaseException:
            self._leave(me)  # interrupted while queued (Ctrl-C): never strand the callers queued behind it
            raise
        if me.lead is not None:
            self._lead(_taken_lead(me))
        if me.alone:
            return self._one(stored, record)  # the one retry: this change in a transaction of its own
        if me.error is not None:
            raise me.error
        return me.result

    def append_many(self, changes: Sequence[tuple[Sequence[StoredEvent], IterationRecord | None]]) -> list[Outcome]:
        """Commit several changes of one caller (an async tracker's batch) with the commits of other callers.

        Each change is queued as if a caller of its own had appended it, so they share transactions with
        each other and with other threads' changes, up to the bounds. Returns once every one is committed or
        failed: per change, what `append` would have returned or the exception it would have raised.
        """
        if not changes:
            return []
        if len(changes) == 1:  # one change: `append`'s path, without the queue's bookkeeping when nothing is in flight
            return [_outcome_of(self.append, *changes[0])]
        if self._bypass():
            return [_outcome_of(self._one, stored, record) for stored, record in changes]
        mine = [_Pending(stored, record, _size(stored, record)) for stored, record in changes]
        with self._lock:
            leading = not self._busy
            self._busy = True
            if not leading:
                for pending in mine:
                    pending.ready = threading.Event()
                self._queue.extend(mine)
        if leading:
            self._lead_own(mine)
        else:
            for pending in mine:
                _ready(pending).wait()
                if pending.lead is not None:
                    self._lead(_taken_lead(pending))
        return [_own_outcome(pending, self._one) for pending in mine]

    def _lead_own(self, mine: list[_Pending]) -> None:
        """Nothing was in flight: commit one caller's changes at once, in groups within the bounds (no queue, no
        hand-overs); changes that other threads queue meanwhile go in the commit after."""
        try:
            for batch in _within_bounds(mine, self.max_changes, self.max_bytes):
                if len(batch) == 1:
                    _settle_alone(batch[0], self._commit_alone)
                else:
                    self._commit_group(batch)
        finally:
            self._hand_over()

    def _commit_alone(self, stored: Sequence[StoredEvent], record: IterationRecord | None) -> int | None:
        self.commits += 1
        self.changes += 1
        return self._one(stored, record)

    def _leave(self, me: _Pending) -> None:
        """A queued caller was interrupted: still queued, its change is dropped (never committed); already
        chosen to lead, it leads that commit first (the others' changes are in it); in another's group, its
        change is committed with that group, as an interrupted commit of its own may be."""
        with self._lock:
            queued = me in self._queue
            if queued:
                self._queue.remove(me)
        if not queued and me.lead is not None:
            self._lead(_taken_lead(me))

    def _hand_over(self) -> None:
        """The commit in flight ended: the first queued caller leads the next, with what is queued (bounded)."""
        with self._lock:
            if not self._queue:
                self._busy = False
                return
            batch = [self._queue.popleft()]
            size = batch[0].size
            while self._queue and len(batch) < self.max_changes and size + self._queue[0].size <= self.max_bytes:
                size += self._queue[0].size
                batch.append(self._queue.popleft())
            batch[0].lead = batch
        _ready(batch[0]).set()

    def _lead(self, batch: list[_Pending]) -> None:
        """Commit the batch in one transaction (in the leader's thread), then tell each caller its outcome."""
        try:
            if len(batch) == 1:
                _settle_alone(batch[0], self._commit_alone)
                return
            self._commit_group(batch)
        finally:
            self._hand_over()
            for pending in batch[1:]:
                _ready(pending).set()

    def _commit_group(self, batch: list[_Pending]) -> None:
        stored = [event for pending in batch for event in pending.stored]
        records = [pending.record for pending in batch if pending.record is not None]
        self.commits += 1
        self.changes += len(batch)
        try:
            ids = self._many(stored, records)
        except StoreUnavailableError as e:
            # The store is away, or the commit may have landed: every change's outcome is that one.
            batch[0].error = e
            for pending in batch[1:]:
                pending.error = _own_copy(e)
            return
        except Exception:
            # A conflict or a refused value of one change (which, the error does not say): each alone, once.
            for pending in batch:
                pending.alone = True
            return
        except BaseException:
            # The leader was interrupted (Ctrl-C) with the group's commit in hand: it may have landed.
            for pending in batch[1:]:
                pending.error = OutcomeUnknownError("the thread leading its group commit was interrupted")
            raise
        at = 0
        for pending in batch:
            own = list(ids[at : at + len(pending.stored)]) if ids else []
            at += len(pending.stored)
            pending.result = max(own) if own else None


def _settle_alone(pending: _Pending, commit: CommitOne) -> None:
    """Commit one queued change alone, in its leader's thread: its outcome as its caller will see it."""
    try:
        pending.result = commit(pending.stored, pending.record)
    except Exception as e:
        pending.error = e


def _ready(pending: _Pending) -> threading.Event:
    """The event of a queued change (every change in the queue has one)."""
    assert pending.ready is not None
    return pending.ready


def _within_bounds(pendings: list[_Pending], max_changes: int, max_bytes: int) -> list[list[_Pending]]:
    """Consecutive groups of the changes, each within the bounds (a change over the byte bound alone)."""
    groups: list[list[_Pending]] = []
    size = 0
    for pending in pendings:
        if not groups or len(groups[-1]) >= max_changes or size + pending.size > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(pending)
        size += pending.size
    return groups


def _taken_lead(pending: _Pending) -> list[_Pending]:
    """The batch a caller was chosen to lead, taken from its pending change: the batch holds that change, so
    keeping it there would make a reference cycle, left for the cyclic garbage collector (whose pauses a host's
    event loop feels) instead of freed when the commit ends."""
    batch = pending.lead
    assert batch is not None
    pending.lead = None
    return batch


def _outcome_of(commit: CommitOne, stored: Sequence[StoredEvent], record: IterationRecord | None) -> Outcome:
    try:
        return commit(stored, record)
    except Exception as e:  # the change's own outcome, handed back to its caller
        return e


def _own_outcome(pending: _Pending, commit: CommitOne) -> Outcome:
    """A queued change's outcome once its group ended: committed, failed, or (its group failed for a reason one
    change may have caused) committed alone now."""
    if pending.alone:
        return _outcome_of(commit, pending.stored, pending.record)
    if pending.error is not None:
        return pending.error if isinstance(pending.error, Exception) else OutcomeUnknownError(str(pending.error))
    return pending.result


def _own_copy(error: StoreUnavailableError) -> StoreUnavailableError:
    """An instance of the error for another caller's thread (one instance raised in many threads mixes tracebacks)."""
    copy = type(error).__new__(type(error))
    copy.args = error.args
    copy.__dict__.update(error.__dict__)
    copy.__cause__ = error.__cause__
    return copy


def _size(stored: Sequence[StoredEvent], record: IterationRecord | None) -> int:
    """A change's size for the group's byte bound: its events' state, and a record's allowance."""
    return sum(len(event.state) for event in stored) + (0 if record is None else _RECORD_BYTES)
