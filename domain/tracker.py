"""The tracker: the application service the host calls at every step of an iteration."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    OperationalError,
    Recording,
    StoredEvent,
)
from eventsourcing.utils import Environment, resolve_topic
from pydantic import BaseModel, ConfigDict

from itertrack.domain.clock import Clock, SystemClock
from itertrack.domain.commands import Change, DeferredChange, MetricsChange, PhaseChange, RecordSave
from itertrack.domain.errors import (
    ConcurrencyError,
    DuplicateIterationError,
    InvalidInputError,
    InvalidIterationIdError,
    IterationError,
    IterationNotFoundError,
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
)
from itertrack.domain.events import new_event_id
from itertrack.domain.iteration import Iteration
from itertrack.domain.metrics import Amount, check_metrics, time_metric
from itertrack.domain.phases import TERMINAL_PHASES, Phase, PhaseCatalog
from itertrack.domain.ports import IterationRecordStore
from itertrack.domain.records import IterationRecord
from itertrack.domain.spool import Spool, SpooledChange
from itertrack.domain.state import IterationState
from itertrack.domain.text import check_agent_id, check_error_message, check_iteration_number, error_message_of
from itertrack.domain.usage import LLMUsage

log = logging.getLogger("itertrack")

DEFAULT_MAX_ATTEMPTS = 12
_LOCK_STRIPES = 64
_BACKOFF_BASE_S = 0.002
_BACKOFF_CAP_S = 0.25
# How long close() waits for the forwarder to finish the change in hand (a connect may take connect_timeout).
_CLOSE_WAIT_S = 10.0
# How long a deferred change waits for its iteration to reach the store (another process's spool may
# still hold its start) before it is reported as stuck.
_MISSING_ITERATION_GRACE_S = 600.0
# Spooled changes read per page; plain event changes of a page go to the store in one transaction.
_FORWARD_BATCH = 200


def parse_iteration_id(value: object, field: str = "iteration_id") -> UUID:
    """A UUID, or a string that parses as one."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidIterationIdError(field, value, "must be a UUID")


@contextmanager
def store_unavailable_as_typed_error() -> Iterator[None]:
    """The store stopped answering mid-run: raise `StoreUnavailableError` from the library's error."""
    try:
        yield
    except (OperationalError, InterfaceError) as e:
        raise StoreUnavailableError(f"store is unavailable: {str(e).strip() or type(e).__name__}") from e


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

    def count(self, change: SpooledChange, outcome: str) -> None:
        if outcome == "forwarded":
            self.forwarded += 1
        elif outcome == "already":
            self.already += 1
        elif outcome == "stuck":
            self.blocked.add(change.iteration_id)
        else:
            self.later.add(change.iteration_id)


class PerformanceTracker(Application[UUID]):
    """Records every phase change and metric update of every iteration as immutable events.

    The store is chosen by `store=` (or `ITERTRACK_STORE`): `sqlite:///path.db` (the default,
    `itertrack.db` in the working directory), `postgresql://user[:password]@host:port/db`,
    or `memory://`. Store URLs are turned into recorders by the adapter named in
    `ITERTRACK_STORE_RESOLVER`, so this module never imports a database driver.
    """

    name = "PerformanceTracker"
    STORE = "ITERTRACK_STORE"
    STORE_RESOLVER = "ITERTRACK_STORE_RESOLVER"
    MIGRATE = "ITERTRACK_MIGRATE"
    # "n" stops the background forwarder (for `itertrack spool flush`, which forwards itself).
    FORWARD = "ITERTRACK_FORWARD"
    env: ClassVar[dict[str, str]] = {
        STORE_RESOLVER: "itertrack.adapters.stores:construct_factory",
        # Keep aggregates cached and trust the cache: the store's (id, version) key
        # detects a stale copy at save time, and only then is the iteration re-loaded.
        "AGGREGATE_CACHE_MAXSIZE": "10000",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        # No copy per command: commands run under a per-iteration lock, and any failure after the
        # cached copy may have changed evicts it (see _change).
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }

    def __init__(
        self,
        store: str | None = None,
        *,
        phases: Iterable[str] = (),
        clock: Clock | None = None,
        migrate: bool | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.catalog = PhaseCatalog(phases)
        if clock is not None and not all(callable(getattr(clock, m, None)) for m in ("now", "monotonic", "new_id")):
            raise InvalidInputError("clock", clock, "must have now(), monotonic() and new_id()")
        self.clock: Clock = clock or SystemClock()
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInputError("max_attempts", max_attempts, "must be a positive int")
        self.max_attempts = max_attempts
        # How many changes lost a version race and were re-applied on a re-loaded iteration.
        self.conflicts_retried = 0
        self._save_listeners: list[Callable[[int], None]] = []
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        settings = dict(env or {})
        if store is not None:
            if not isinstance(store, str) or not store.strip():
                raise StoreConfigError("store", store, "must be a store URL such as sqlite:///itertrack.db")
            settings[self.STORE] = store
        if migrate is not None:
            settings[self.MIGRATE] = "y" if migrate else "n"
        super().__init__(env=settings)
        if not isinstance(self.recorder, IterationRecordStore):
            self.close()
            raise StoreConfigError("store", type(self.recorder).__name__, "recorder cannot store iteration records")
        self.records: IterationRecordStore = self.recorder
        # The spool (PostgreSQL stores): while it holds changes, new changes join it, in order.
        self.spool: Spool | None = getattr(self.factory, "spool", None)
        self._spool_lock = threading.Lock()
        # Whether the store answered last time it was asked: while it does not, nothing waits on the network.
        self._store_up = not getattr(self.factory, "started_offline", False)
        self._spooling = self.spool is not None and (self._movable_waiting(set()) > 0 or not self._store_up)
        self._forwarder: threading.Thread | None = None
        self.forward_failures = 0
        # How many changes went to the spool as events, and as deferred changes (their version unknown).
        self.changes_spooled = 0
        self.changes_deferred = 0
        self._auto_forward = self.env.get(self.FORWARD, "y").lower() not in ("n", "no", "false", "0")
        if self._spooling:
            self._start_forwarder()

    def construct_factory(self, env: Environment) -> InfrastructureFactory:
        """Let the store adapter turn the store URL into an infrastructure factory."""
        topic = env.get(self.STORE_RESOLVER) or type(self).env[self.STORE_RESOLVER]
        try:
            resolver: Callable[[Environment], InfrastructureFactory] = resolve_topic(topic)
        except Exception as e:
            raise StoreConfigError(self.STORE_RESOLVER, topic, f"does not name a store resolver ({e})") from e
        return resolver(env)

    # -- commands -----------------------------------------------------------------

    @store_unavailable_as_typed_error()
    def start_iteration(self, agent_id: str, iteration_number: int, iteration_id: UUID | str | None = None) -> UUID:
        """Begin tracking an iteration (phase `initializing`) and return its id."""
        agent_id = check_agent_id(agent_id)
        iteration_number = check_iteration_number(iteration_number)
        new_id = self.clock.new_id() if iteration_id is None else parse_iteration_id(iteration_id)
        iteration = Iteration.start(new_id, agent_id, iteration_number, self.clock.now())
        self._save_new(iteration)
        return new_id

    @store_unavailable_as_typed_error()
    def update_phase(self, iteration_id: UUID | str, phase: str, error: str | None = None) -> None:
        """Record that the iteration entered `phase`; `failed` takes the error message."""
        iid = parse_iteration_id(iteration_id)
        phase = self.catalog.check(phase)
        # Checked here as well as in the aggregate: a change that waits in the spool is never refused later for it.
        if phase == Phase.FAILED and error is None:
            raise InvalidInputError("error", error, "is required when phase is 'failed'")
        if phase != Phase.FAILED and error is not None:
            raise InvalidInputError("error", error, f"is only allowed with phase 'failed', not {phase!r}")
        if error is not None:
            error = check_error_message(error)
        self._change(iid, PhaseChange.model_construct(event_id=new_event_id(), phase=phase, error=error))

    @store_unavailable_as_typed_error()
    def update_metrics(self, iteration_id: UUID | str, metrics: Mapping[str, Amount]) -> None:
        """Add each amount to its metric's running total."""
        iid = parse_iteration_id(iteration_id)
        checked = check_metrics(metrics)
        self._change(iid, MetricsChange.model_construct(event_id=new_event_id(), metrics=checked))

    def record_usage(self, iteration_id: UUID | str, phase: str, usage: object) -> LLMUsage:
        """Add one LLM response's usage to `<phase>_tokens` and to the four per-kind token metrics."""
        phase = self.catalog.check(phase)
        counted = LLMUsage.of(usage)
        self.update_metrics(iteration_id, counted.as_metrics(phase))
        return counted

    @contextmanager
    def track_phase(self, iteration_id: UUID | str, phase: str) -> Iterator[None]:
        """Enter `phase`, time the block, add `<phase>_time_ms`; on an exception mark the iteration failed."""
        iid = parse_iteration_id(iteration_id)
        if self.catalog.check(phase) in TERMINAL_PHASES:
            raise InvalidInputError("phase", phase, "cannot be timed: it is terminal (use update_phase)")
        self.update_phase(iid, phase)
        started = self.clock.monotonic()
        try:
            yield
        except Exception as exc:
            elapsed = self._elapsed_ms(started)
            try:
                self.update_metrics(iid, {time_metric(phase): elapsed})
                self.update_phase(iid, Phase.FAILED, error=error_message_of(exc))
            except Exception:
                log.warning("could not mark iteration %s failed after an error in %s", iid, phase, exc_info=True)
            raise
        self.update_metrics(iid, {time_metric(phase): self._elapsed_ms(started)})

    @store_unavailable_as_typed_error()
    def save_iteration(self, record: IterationRecord | Mapping[str, Any]) -> UUID:
        """The saving step: store the record under the iteration's id, in the transaction of its event.

        With `record.id` the tracked iteration must exist and match the record's agent and number;
        without it, a new iteration id is made and the iteration is started and saved at once.
        """
        parsed = IterationRecord.parse(record)
        now = self.clock.now()
        created_at = parsed.created_at or now
        if parsed.id is None:
            new_id = self.clock.new_id()
            to_store = parsed.model_copy(update={"id": new_id, "created_at": created_at})
            iteration = Iteration.start(new_id, parsed.agent_id, parsed.iteration_number, now)
            iteration.mark_saved(parsed.iteration_status, now)
            self._save_new(iteration, iteration_record=to_store)
            return new_id

        to_store = parsed.model_copy(update={"created_at": created_at})
        save = RecordSave.model_construct(
            event_id=new_event_id(),
            agent_id=parsed.agent_id,
            iteration_number=parsed.iteration_number,
            status=parsed.iteration_status,
        )
        self._change(parsed.id, save, iteration_record=to_store)
        return parsed.id

    @store_unavailable_as_typed_error()
    def add_save_listener(self, listener: Callable[[int], None]) -> None:
        """Call `listener(notification_id)` after each save of this tracker (e.g. to refresh read models)."""
        self._save_listeners.append(listener)

    def remove_save_listener(self, listener: Callable[[int], None]) -> None:
        """Stop calling a listener added with `add_save_listener`."""
        if listener in self._save_listeners:
            self._save_listeners.remove(listener)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        super()._notify(recordings)
        if recordings and self._save_listeners:
            last = recordings[-1].notification.id
            for listener in list(self._save_listeners):
                try:
                    listener(last)
                except Exception:
                    # A listener's failure must never fail the host's tracked change, already committed.
                    log.warning("save listener %r failed", listener, exc_info=True)

    def close(self) -> None:
        """Stop the forwarder (it finishes the change in hand), then close the store; the spool keeps the rest."""
        self.closing.set()
        forwarder = self._forwarder
        if forwarder is not None and forwarder is not threading.current_thread():
            forwarder.join(timeout=_CLOSE_WAIT_S)
        super().close()

    def migrate(self) -> None:
        """Create the store's tables if they do not exist (safe to run from many processes)."""
        self.records.migrate()

    # -- queries --------------------------------------------------------------------

    @store_unavailable_as_typed_error()
    def get_iteration(
        self, iteration_id: UUID | str, *, version: int | None = None, at: datetime | None = None
    ) -> IterationState:
        """The iteration's state now, as of one of its versions, or as of an instant (audit replay).

        `at` selects the last version whose timestamp is at or before it.
        """
        iid = parse_iteration_id(iteration_id)
        if version is not None and at is not None:
            raise InvalidInputError("at", at, "give either version or at, not both")
        if version is not None:
            return self._state_of(self._events_until_version(iid, version))
        if at is not None:
            events = self.history(iid)
            cut = self._version_at(events, at)
            return self._state_of(events[:cut])
        return self._read(iid)

    @store_unavailable_as_typed_error()
    def version_at(self, iteration_id: UUID | str, at: datetime) -> int:
        """The last version of the iteration whose event timestamp is at or before `at`."""
        iid = parse_iteration_id(iteration_id)
        return self._version_at(self.history(iid), at)

    @staticmethod
    def _version_at(events: list[Iteration.Event], at: object) -> int:
        if not isinstance(at, datetime):
            raise InvalidInputError("at", at, "must be a datetime")
        if at.tzinfo is None or at.utcoffset() is None:
            raise InvalidInputError("at", at, "must be timezone-aware")
        if at < events[0].timestamp:
            raise InvalidInputError(
                "at", at.isoformat(), f"is before the iteration began ({events[0].timestamp.isoformat()})"
            )
        chosen = events[0].originator_version
        for event in events:
            if event.timestamp > at:
                break
            chosen = event.originator_version
        return chosen

    @store_unavailable_as_typed_error()
    def history(self, iteration_id: UUID | str) -> list[Iteration.Event]:
        """The iteration's immutable events, oldest first."""
        iid = parse_iteration_id(iteration_id)
        events: list[Iteration.Event] = list(self.events.get(iid))  # type: ignore[arg-type]
        if not events:
            raise IterationNotFoundError(iid)
        return events

    @store_unavailable_as_typed_error()
    def get_record(self, iteration_id: UUID | str) -> IterationRecord | None:
        """The record the saving step stored under this id, if any."""
        iid = parse_iteration_id(iteration_id)
        row = self.records.select_iteration_record(iid)
        return None if row is None else IterationRecord.model_validate(row)

    # -- internals --------------------------------------------------------------------

    def _now_after(self, iteration: Iteration) -> datetime:
        # Event times never run backwards within an iteration, even across hosts' clocks.
        return max(self.clock.now(), iteration.modified_on)

    def _elapsed_ms(self, started: float) -> float:
        return round(max(0.0, self.clock.monotonic() - started) * 1000.0, 3)

    def _evict(self, iteration_id: UUID) -> None:
        cache = self.repository.cache
        if cache is not None:
            with suppress(KeyError):
                cache.get(iteration_id, evict=True)

    def _ensure_open(self) -> None:
        if self.closing.is_set():
            raise StoreError("the tracker is closed")

    def _load(self, iteration_id: UUID) -> Iteration:
        self._ensure_open()
        try:
            iteration: Iteration = self.repository.get(iteration_id)
        except AggregateNotFoundError:
            raise IterationNotFoundError(iteration_id) from None
        return iteration

    def _events_until_version(self, iteration_id: UUID, version: object) -> list[Iteration.Event]:
        """The iteration's events up to `version` (one query), which must exist."""
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 2**62:
            raise InvalidInputError("version", version, "must be an int of at least 1")
        events: list[Iteration.Event] = list(self.events.get(iteration_id, lte=version))  # type: ignore[arg-type]
        if not events:
            raise IterationNotFoundError(iteration_id)
        if events[-1].originator_version < version:
            last = events[-1].originator_version
            raise InvalidInputError("version", version, f"is beyond the iteration's last version {last}")
        return events

    @staticmethod
    def _state_of(events: list[Iteration.Event]) -> IterationState:
        """The state the given events (from version 1 on) build, without touching the cache."""
        iteration: Iteration | None = None
        for event in events:
            iteration = event.mutate(iteration)
        assert iteration is not None
        return IterationState.of(iteration)

    def _lock(self, iteration_id: UUID) -> threading.Lock:
        """The lock guarding this iteration's cached copy in this process (striped by id)."""
        return self._locks[iteration_id.int % _LOCK_STRIPES]

    def _read(self, iteration_id: UUID) -> IterationState:
        """A snapshot of the iteration now; the cache may be behind other processes, so read what came after it."""
        cache = self.repository.cache
        with self._lock(iteration_id):
            cached = cache is not None and iteration_id in cache.cache
            if not cached and self.spool is not None and not self._store_up:
                raise StoreUnavailableError(f"the store is unavailable and iteration {iteration_id} is not loaded here")
            iteration = self._load(iteration_id)
            spooled = self.spool.count(iteration_id) if self.spool is not None and self._spooling else 0
            if spooled and not cached:
                # Loaded from the store, which is behind the waiting changes: never keep that copy.
                self._evict(iteration_id)
            if not spooled and self._store_up:
                try:
                    newer = cast(Iterator[Iteration.Event], self.events.get(iteration_id, gt=iteration.version))
                    for event in newer:
                        event.mutate(iteration)
                except (OperationalError, InterfaceError):
                    if self.spool is None:
                        self._evict(iteration_id)
                        raise
                    # The store is away: the cached copy is what this process knows.
                except BaseException:
                    self._evict(iteration_id)
                    raise
            return IterationState.of(iteration, spooled_changes=spooled)

    def _record_changes(self, iteration: Iteration, **save_kwargs: Any) -> None:
        """Append the iteration's new events and keep it cached (the library's save, minus its generic collecting).

        With a spool, a store that does not answer (or earlier changes of this iteration still waiting)
        sends the events to the spool instead: the call returns, and the forwarder sends them on, in
        order, when the store is back. An iteration with nothing waiting goes straight to a store that
        answers, so the host's new work does not queue behind an outage's backlog.
        """
        self._ensure_open()
        events = iteration.collect_events()
        cache = self.repository.cache
        if self.spool is not None:
            with self._spool_lock:
                if self._spooling and (not self._store_up or self.spool.counts(iteration.id)[0]):
                    self._spool(iteration, events, save_kwargs)
                    return
            try:
                recordings = self.events.put(events, **save_kwargs)
            except (OperationalError, InterfaceError) as e:
                log.warning("store unavailable, spooling changes of %s: %s", iteration.id, e)
                with self._spool_lock:
                    self._spooling = True
                    self._store_up = False
                    self._spool(iteration, events, save_kwargs)
                self._start_forwarder()
                return
            self._store_up = True
        else:
            recordings = self.events.put(events, **save_kwargs)
        if cache is not None:
            cache.put(iteration.id, iteration)
        self._notify(recordings)

    def _must_defer(self, iteration_id: UUID) -> bool:
        """While spooling: must this change wait as a deferred change (its iteration's next version is unknown)?

        Yes behind a deferred change of the iteration; and when this process holds no copy of the
        iteration and either its earlier changes wait (the store's copy is behind them) or the store is away.
        """
        assert self.spool is not None
        waiting, deferred = self.spool.counts(iteration_id)
        cache = self.repository.cache
        cached = cache is not None and iteration_id in cache.cache
        return bool(deferred) or (not cached and (bool(waiting) or not self._store_up))

    def _defer(self, iteration_id: UUID, change: Change, save_kwargs: dict[str, Any]) -> None:
        """Keep the change itself in the spool, to be applied by the forwarder on the stored iteration."""
        assert self.spool is not None
        self._evict(iteration_id)
        deferred = DeferredChange(at=self.clock.now(), change=change)
        with self._spool_lock:
            self.spool.add_deferred(iteration_id, deferred, save_kwargs.get("iteration_record"))
            self._spooling = True
            self.changes_deferred += 1
        self._start_forwarder()

    def _spool(self, iteration: Iteration, events: Sequence[Any], save_kwargs: dict[str, Any]) -> None:
        assert self.spool is not None
        stored = [self.mapper.to_stored_event(e) for e in events]
        self.spool.add(iteration.id, stored, save_kwargs.get("iteration_record"))
        self.changes_spooled += 1
        if self.repository.cache is not None:
            self.repository.cache.put(iteration.id, iteration)

    # -- the forwarder --------------------------------------------------------------------------------

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
                with self._spool_lock:
                    # Stop only if nothing joined the spool since: a change spooled after this check
                    # finds no forwarder and starts one.
                    if not self._spooling:
                        self._forwarder = None
                        return
                if flushed.forwarded or flushed.already_stored:
                    delay = 0.05  # the store answers: go on at once with what arrived meanwhile
                    continue
            except (OperationalError, InterfaceError, StoreUnavailableError):
                self.forward_failures += 1
            except Exception:
                self.forward_failures += 1
                log.warning("spool forwarding failed; will retry", exc_info=True)
            self.closing.wait(delay)
            delay = min(delay * 2, 2.0)

    @store_unavailable_as_typed_error()
    def flush_spool(self) -> SpoolFlush:
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
                        tally.count(change, forward(change))
            self._forward_run(run, tally)
            if tally.forwarded or tally.already:
                self._store_up = True  # it took changes: the host's new work may go straight to it
        with self._spool_lock:
            # Changes added meanwhile, and those not behind a stuck one, keep the spool in use.
            movable = self._movable_waiting(tally.blocked)
            self._spooling = bool(movable)
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
                self.recorder.insert_events([e for change in run for e in change.events])
            except IntegrityError:
                pass  # some change is already stored, or stuck: find which, in order
            else:
                self.spool.remove(*(change.id for change in run))
                tally.forwarded += len(run)
                return
        for change in run:
            if change.iteration_id not in tally.blocked:
                tally.count(change, self._forward_events(change))

    def _forward_events(self, change: SpooledChange) -> str:
        """Append a spooled change's events: "forwarded", "already" (the store holds exactly them) or "stuck"."""
        assert self.spool is not None
        try:
            self.recorder.insert_events(list(change.events), iteration_record=change.record)
        except IntegrityError:
            if self._holds(change.iteration_id, change.events):
                self.spool.remove(change.id)
                return "already"
            self.spool.mark_stuck(change.id, "another writer holds these versions: resolve by hand")
            self._evict(change.iteration_id)
            return "stuck"
        self.spool.remove(change.id)
        return "forwarded"

    def _forward_deferred(self, change: SpooledChange) -> str:
        """Apply a deferred change to the stored iteration: "forwarded", "already" (its event is stored) or "stuck".

        Its event id makes this idempotent: if a forward committed before a crash, the stored history
        holds an event with that id and the change is only removed. A change the iteration refuses (it
        finished meanwhile, the record belongs to another iteration, ...) is kept as stuck, with the reason.
        """
        assert self.spool is not None
        assert change.deferred is not None
        iid, deferred = change.iteration_id, change.deferred
        with self._lock(iid):
            for attempt in range(1, self.max_attempts + 1):
                # As in _change: after a lost race, queue on the store's per-iteration lock.
                with self.records.serialised(iid) if attempt > 1 else nullcontext():
                    outcome = self._apply_deferred(change, deferred)
                if outcome is not None:
                    return outcome
                if attempt < self.max_attempts:
                    time.sleep(random.uniform(0.0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt)))
        return "waiting"

    def _apply_deferred(self, change: SpooledChange, deferred: DeferredChange) -> str | None:
        """One attempt of `_forward_deferred`; None when another writer appended first."""
        assert self.spool is not None
        iid = change.iteration_id
        events = cast(list[Iteration.Event], list(self.events.get(iid)))
        if not events:
            # Perhaps another process started it and its own spool has not reached the store yet.
            waited = (self.clock.now() - deferred.at).total_seconds()
            if waited < _MISSING_ITERATION_GRACE_S:
                return "waiting"
            self.spool.mark_stuck(change.id, f"iteration {iid} is not in the store ({waited:.0f} s after the change)")
            return "stuck"
        if any(e.event_id == deferred.change.event_id for e in events):
            self.spool.remove(change.id)
            self._evict(iid)
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
            self.recorder.insert_events(stored, iteration_record=change.record)
        except IntegrityError:
            return None  # another writer appended meanwhile (or a forward of ours committed): look again
        self.spool.remove(change.id)
        self._evict(iid)
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

    def _already_stored(self, pending: list[Iteration.Event]) -> bool:
        return self._holds(pending[0].originator_id, [self.mapper.to_stored_event(e) for e in pending])

    def _save_new(self, iteration: Iteration, **save_kwargs: Any) -> None:
        pending = cast(list[Iteration.Event], list(iteration.pending_events))
        try:
            self._record_changes(iteration, **save_kwargs)
        except IntegrityError as e:
            if not self._already_stored(pending):
                raise DuplicateIterationError(iteration.id) from e

    def _change(self, iteration_id: UUID, change: Change, **save_kwargs: Any) -> None:
        """Apply `change` to the iteration and save; on a version conflict re-load and re-apply it.

        With a spool, a change whose iteration cannot be loaded (the store is away and this process has
        no copy) is kept as a deferred change, and so is every later change of that iteration until the
        forwarder has applied them: the call returns and nothing is lost.
        """
        self._ensure_open()
        cache = self.repository.cache
        with self._lock(iteration_id):
            if self._spooling and self._must_defer(iteration_id):
                self._defer(iteration_id, change, save_kwargs)
                return
            for attempt in range(1, self.max_attempts + 1):
                try:
                    # After a lost race, retries queue on the store's per-iteration lock instead of colliding.
                    with self.records.serialised(iteration_id) if attempt > 1 else nullcontext():
                        # The cached copy itself (no deep copy): any failure below evicts it.
                        iteration = self._load(iteration_id)
                        try:
                            change.apply(iteration, self._now_after(iteration))
                            pending = cast(list[Iteration.Event], list(iteration.pending_events))
                            self._record_changes(iteration, **save_kwargs)
                        except IntegrityError:
                            self._evict(iteration_id)
                            if self._already_stored(pending):
                                if cache is not None:
                                    cache.put(iteration_id, iteration)
                                return
                            # Another writer took this version: the cached copy was stale.
                            self.conflicts_retried += 1
                        except BaseException:
                            self._evict(iteration_id)
                            raise
                        else:
                            return
                except (OperationalError, InterfaceError) as e:
                    if self.spool is None:
                        raise
                    # Loading (or checking a conflict) needed the store, which is away: keep the change itself.
                    log.warning("store unavailable, deferring a change of %s: %s", iteration_id, e)
                    self._store_up = False
                    self._defer(iteration_id, change, save_kwargs)
                    return
                if attempt < self.max_attempts:
                    time.sleep(random.uniform(0.0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt)))
        raise ConcurrencyError(iteration_id, self.max_attempts)
