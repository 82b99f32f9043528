"""The tracker: the application service the host calls at every step of an iteration."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
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
)
from eventsourcing.utils import Environment, resolve_topic

from itertrack.domain.model.changes import Change, DeferredChange, MetricsChange, PhaseChange, RecordSave
from itertrack.domain.model.errors import (
    ConcurrencyError,
    DuplicateIterationError,
    InvalidInputError,
    InvalidIterationIdError,
    IterationNotFoundError,
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
)
from itertrack.domain.model.events import new_event_id
from itertrack.domain.model.iteration import Iteration, checked_error
from itertrack.domain.model.metrics import Amount, check_metrics, time_metric
from itertrack.domain.model.phases import TERMINAL_PHASES, Phase, PhaseCatalog
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.model.state import IterationState
from itertrack.domain.model.text import check_agent_id, check_iteration_number, error_message_of
from itertrack.domain.model.usage import LLMUsage
from itertrack.domain.service.clock import Clock, SystemClock
from itertrack.domain.service.forwarding import SpoolForwarding, retry_pause
from itertrack.domain.service.ports import IterationRecordStore
from itertrack.domain.service.spool import Spool
from itertrack.domain.service.unavailable import store_unavailable_as_typed_error

log = logging.getLogger("itertrack")

DEFAULT_MAX_ATTEMPTS = 12
_LOCK_STRIPES = 64
# How long close() waits for the forwarder to finish the change in hand (a connect may take connect_timeout).
_CLOSE_WAIT_S = 10.0


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


class PerformanceTracker(SpoolForwarding, Application[UUID]):
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
        STORE_RESOLVER: "itertrack.adapters.store.factory:construct_factory",
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
        # The spool holds changes (stuck ones too): each change then asks whether its iteration has some waiting.
        self._spooling = self.spool is not None and (self.spool.count() > 0 or not self._store_up)
        # The spool holds changes the forwarder can send (not stuck, not behind a stuck one).
        self._unforwarded = self.spool is not None and self._movable_waiting(set()) > 0
        self._forwarder: threading.Thread | None = None
        self._missing_since: dict[int, datetime] = {}
        self.forward_failures = 0
        # How many changes went to the spool as events, and as deferred changes (their version unknown).
        self.changes_spooled = 0
        self.changes_deferred = 0
        self._auto_forward = self.env.get(self.FORWARD, "y").lower() not in ("n", "no", "false", "0")
        if self.spool is not None and (self._unforwarded or not self._store_up):
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
        error = checked_error(phase, error)
        self._change(iid, PhaseChange(event_id=new_event_id(), phase=phase, error=error))

    @store_unavailable_as_typed_error()
    def update_metrics(self, iteration_id: UUID | str, metrics: Mapping[str, Amount]) -> None:
        """Add each amount to its metric's running total."""
        iid = parse_iteration_id(iteration_id)
        checked = check_metrics(metrics)
        self._change(iid, MetricsChange(event_id=new_event_id(), metrics=checked))

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
        save = RecordSave(
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
        if recordings:
            self._tell_save_listeners(recordings[-1].notification.id)

    def _tell_save_listeners(self, notification_id: int) -> None:
        """Call each save listener with the last notification id saved (by the host, or by the forwarder)."""
        for listener in list(self._save_listeners):
            try:
                listener(notification_id)
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

    @store_unavailable_as_typed_error()
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
                spool_it = self._spooling and (not self._store_up or self.spool.counts(iteration.id)[0] > 0)
                if spool_it:
                    self._spool(iteration, events, save_kwargs)
            if spool_it:
                self._start_forwarder()
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
            self._spooling = self._unforwarded = True
            self.changes_deferred += 1
        self._start_forwarder()

    def _spool(self, iteration: Iteration, events: Sequence[Any], save_kwargs: dict[str, Any]) -> None:
        assert self.spool is not None
        stored = [self.mapper.to_stored_event(e) for e in events]
        self.spool.add(iteration.id, stored, save_kwargs.get("iteration_record"))
        self._spooling = self._unforwarded = True
        self.changes_spooled += 1
        if self.repository.cache is not None:
            self.repository.cache.put(iteration.id, iteration)

    # -- saving, with conflict retries (the spool's forwarder is in forwarding.py) -------------------

    def _already_stored(self, pending: list[Iteration.Event]) -> bool:
        return self._holds(pending[0].originator_id, [self.mapper.to_stored_event(e) for e in pending])

    def _save_new(self, iteration: Iteration, **save_kwargs: Any) -> None:
        pending = cast(list[Iteration.Event], list(iteration.pending_events))
        try:
            self._record_changes(iteration, **save_kwargs)
        except IntegrityError as e:
            if not self._already_stored(pending):
                raise DuplicateIterationError(iteration.id) from e

    def _change(self, iteration_id: UUID, change: Change, **save_kwargs: Any) -> None:  # noqa: C901  # retry, conflict and deferral share one lock and attempt count
        """Apply `change` to the iteration and save; on a version conflict re-load and re-apply it.

        With a spool, a change whose iteration cannot be loaded (the store is away and this process has
        no copy) is kept as a deferred change, and so is every later change of that iteration until the
        forwarder has applied them: the call returns and nothing is lost.
        """
        self._ensure_open()  # before the spool is consulted: a closed tracker neither reads nor spools
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
                    time.sleep(retry_pause(attempt))
        raise ConcurrencyError(iteration_id, self.max_attempts)
