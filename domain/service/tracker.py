"""The tracker: the application service the host calls at every step of an iteration.

Load, apply, save: each call loads the iteration (this process's cached copy when it has one), applies
one change (domain/model/changes.py) and hands the new events to the writer; a version taken by another
writer meanwhile is re-loaded and re-applied. The store, the writer and the retry pause are ports
(store_ports.py), wired by the composition root; the tracker does not know whether the writer spools.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from itertrack.domain.model.change_keys import (
    check_change_id,
    keyed_event_id,
    keyed_iteration_id,
    second_event_id,
)
from itertrack.domain.model.changes import Change, LLMCallChange, MetricsChange, PhaseChange, RecordSave
from itertrack.domain.model.errors import (
    ChangeIdReusedError,
    ConcurrencyError,
    DuplicateIterationError,
    InvalidInputError,
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
)
from itertrack.domain.model.iteration import Iteration, checked_error
from itertrack.domain.model.llm_calls import (
    DEFAULT_PROVIDER,
    MAX_GEO,
    MAX_MODEL,
    MAX_REQUEST_ID,
    check_batch,
    check_duration_ms,
    check_optional_text,
    check_provider,
)
from itertrack.domain.model.metrics import Amount, check_metrics, time_metric
from itertrack.domain.model.phases import TERMINAL_PHASES, Phase, PhaseCatalog
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.model.state import IterationState
from itertrack.domain.model.text import check_agent_id, check_iteration_number, parse_iteration_id
from itertrack.domain.model.usage import LLMUsage
from itertrack.domain.service.clock import Clock, SystemClock
from itertrack.domain.service.contention import RecentContention
from itertrack.domain.service.decided import DecidedChange
from itertrack.domain.service.interruptions import failure_message
from itertrack.domain.service.reads import IterationReads
from itertrack.domain.service.store_ports import IterationWriter, VersionTakenError
from itertrack.domain.service.wiring import TrackerPorts, installed_wiring

log = logging.getLogger("itertrack")

DEFAULT_MAX_ATTEMPTS = 12
_LOCK_STRIPES = 1024


class PerformanceTracker:
    """Records every phase change and metric update of every iteration as immutable events.

    The store is chosen by `store=` (or `ITERTRACK_STORE`): `sqlite:///path.db` (the default,
    `itertrack.db` in the working directory), `postgresql://user[:password]@host:port/db`, or
    `memory://`. The installed composition root (the `itertrack.wiring` entry point) turns it into ports; a host
    that wires its own passes `ports=` instead. Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        store: str | None = None,
        *,
        phases: Iterable[str] = (),
        clock: Clock | None = None,
        migrate: bool | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        env: Mapping[str, str] | None = None,
        ports: TrackerPorts | None = None,
    ) -> None:
        self.catalog = PhaseCatalog(phases)
        if clock is not None and not all(callable(getattr(clock, m, None)) for m in ("now", "monotonic", "new_id")):
            raise InvalidInputError("clock", clock, "must have now(), monotonic() and new_id()")
        self.clock: Clock = clock or SystemClock()
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInputError("max_attempts", max_attempts, "must be a positive int")
        self.max_attempts = max_attempts
        if store is not None and (not isinstance(store, str) or not store.strip()):
            raise StoreConfigError("store", store, "must be a store URL such as sqlite:///itertrack.db")
        if ports is None:
            wire = installed_wiring()
            ports = wire(store, migrate=migrate, env=dict(env or {}), clock=self.clock, max_attempts=max_attempts)
        self.ports = ports
        self._store = ports.store
        self._writer = ports.writer
        # Whether the writer may keep changes (a spool): the port's default never does, and asking it would
        # cost a look-up of the cached copy on every change.
        self._writer_keeps = type(self._writer).must_keep_change is not IterationWriter.must_keep_change
        self._retry = ports.retry
        # How many changes lost a version race and were re-applied on a re-loaded iteration.
        self.conflicts_retried = 0
        self._save_listeners: list[Callable[[int], None]] = []
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._contention = RecentContention(self.clock.monotonic)
        self._closed = False
        self._reads = IterationReads(self._store, self._writer, self._lock, ports.replay_cache_entries)
        self._writer.watch(forgotten=self._forget_between_changes, saved=self._tell_save_listeners)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- commands -----------------------------------------------------------------

    def start_iteration(
        self,
        agent_id: str,
        iteration_number: int,
        iteration_id: UUID | str | None = None,
        *,
        change_id: str | None = None,
    ) -> UUID:
        """Begin tracking an iteration (phase `initializing`) and return its id.

        `change_id` (optional idempotency key, see `update_metrics`): a retry of a start that landed returns
        the same id; without `iteration_id` the id is derived from the key, so a retry names the same one.
        Raises `InvalidInputError` (bad agent id, number, id or change_id), `DuplicateIterationError`,
        `ChangeIdReusedError` (the key started this id for another agent or number), `StoreError`
        (`OutcomeUnknownError` when it may have landed).
        """
        agent_id = check_agent_id(agent_id)
        iteration_number = check_iteration_number(iteration_number)
        key = check_change_id(change_id)
        if iteration_id is not None:
            new_id = parse_iteration_id(iteration_id)
        else:
            new_id = self.clock.new_id() if key is None else keyed_iteration_id(key)
        started_id = None if key is None else keyed_event_id(new_id, key)
        iteration = Iteration.start(new_id, agent_id, iteration_number, self._now(), event_id=started_id)
        self._save_new_once(iteration, started_id, key)
        return new_id

    def update_phase(
        self, iteration_id: UUID | str, phase: str, error: str | None = None, *, change_id: str | None = None
    ) -> None:
        """Record that the iteration entered `phase`; `failed` takes the error message.

        `change_id`: optional idempotency key, as for `update_metrics`.
        """
        iid = parse_iteration_id(iteration_id)
        self._change(iid, self.phase_change(iid, phase, error, change_id), key=change_id)

    def phase_change(self, iteration_id: UUID, phase: str, error: str | None, change_id: str | None) -> PhaseChange:
        """The change `update_phase` applies, its input checked (`InvalidInputError` naming the field)."""
        phase = self.catalog.check(phase)
        # Checked here as well as in the aggregate: a change that waits in a spool is never refused later for it.
        error = checked_error(phase, error)
        return PhaseChange(event_id=keyed_event_id(iteration_id, check_change_id(change_id)), phase=phase, error=error)

    def update_metrics(
        self, iteration_id: UUID | str, metrics: Mapping[str, Amount], *, change_id: str | None = None
    ) -> None:
        """Add each amount to its metric's running total (`<phase>_time_ms` in ms, `<phase>_tokens` in tokens).

        `change_id` (optional idempotency key: a non-empty printable str of at most 200 characters, unique
        per change of the iteration): a retry with the same key after `OutcomeUnknownError`, a crash or a
        timeout is a no-op if the first call landed, so the amounts are added once. The same key with other
        amounts raises `ChangeIdReusedError` (nothing written). Raises `InvalidInputError`, the domain's
        errors (`IterationFinishedError`, ...), `StoreError`.
        """
        iid = parse_iteration_id(iteration_id)
        self._change(iid, self.metrics_change(iid, metrics, change_id), key=change_id)

    def metrics_change(self, iteration_id: UUID, metrics: Mapping[str, Amount], change_id: str | None) -> MetricsChange:
        """The change `update_metrics` applies, its input checked (`InvalidInputError` naming the field)."""
        checked = check_metrics(metrics)
        return MetricsChange(event_id=keyed_event_id(iteration_id, check_change_id(change_id)), metrics=checked)

    def record_usage(
        self,
        iteration_id: UUID | str,
        phase: str,
        usage: object,
        *,
        model: str | None = None,
        change_id: str | None = None,
        provider: str = DEFAULT_PROVIDER,
        duration_ms: float | None = None,
        request_id: str | None = None,
        batch: bool = False,
        inference_geo: str | None = None,
    ) -> LLMUsage | None:
        """Record one LLM call's usage in `phase` (an `Iteration.LLMCallRecorded` event): its tokens are added to
        `<phase>_tokens` and to the four per-kind token metrics, exactly as before the event existed.

        `usage`: a Claude response's `usage` (the SDK's object, a mapping, or an `LLMUsage`). `model`: the
        model the response reported (`response.model`), so the call can be priced. The other options are
        `record_llm_call`'s. Returns the usage read, or None when the response carried none (usage unknown:
        the call is still recorded and counted, a warning is logged, and nothing is raised).
        """
        return self.record_llm_call(
            iteration_id,
            phase,
            model=model,
            usage=usage,
            duration_ms=duration_ms,
            request_id=request_id,
            provider=provider,
            batch=batch,
            inference_geo=inference_geo,
            change_id=change_id,
        )

    def record_llm_call(
        self,
        iteration_id: UUID | str,
        phase: str,
        *,
        model: str | None,
        usage: object,
        duration_ms: float | None = None,
        request_id: str | None = None,
        provider: str = DEFAULT_PROVIDER,
        batch: bool = False,
        inference_geo: str | None = None,
        change_id: str | None = None,
    ) -> LLMUsage | None:
        """Record one LLM call made in `phase` as an `Iteration.LLMCallRecorded` event.

        `model`: as the response named it (None when it did not). `usage`: the response's usage (the SDK's
        object, a mapping or an `LLMUsage`; a streamed response's final usage, see `LLMUsage.from_stream`);
        its tokens are added to the phase's token metrics. None, or an object with no token count, records
        the call with usage unknown (counted, nothing added), logs a warning and returns None: a missing
        usage never breaks the work it measures. `duration_ms`: the call's wall time in ms, when measured.
        `request_id`: the provider's id of the response (Anthropic's `response.id`), when known.
        `provider`: `anthropic` unless told. `batch`: sent through a batch API (also taken as true when the
        usage's `service_tier` is `batch`). `inference_geo`: where the provider ran it (e.g. `us`), when
        chosen. `change_id`: optional idempotency key, as for `update_metrics`.

        Returns the usage read (None when unknown). Raises `InvalidInputError` naming the field (a bad
        count in the usage: `InvalidMetricError`, e.g. `usage.output_tokens=-2`), the domain's errors
        (`IterationFinishedError`, ...), `StoreError`; nothing is written then.
        """
        iid = parse_iteration_id(iteration_id)
        call = self.llm_call_change(
            iid,
            phase,
            model=model,
            usage=usage,
            duration_ms=duration_ms,
            request_id=request_id,
            provider=provider,
            batch=batch,
            inference_geo=inference_geo,
            change_id=change_id,
        )
        self._change(iid, call, key=change_id)
        return call.usage

    def llm_call_change(
        self,
        iteration_id: UUID,
        phase: str,
        *,
        model: str | None,
        usage: object,
        duration_ms: float | None,
        request_id: str | None,
        provider: str,
        batch: bool,
        inference_geo: str | None,
        change_id: str | None,
    ) -> LLMCallChange:
        """The change `record_llm_call` applies, its input checked (`InvalidInputError` naming the field); its
        `usage` is the usage read (None when unknown, which is logged as a warning here)."""
        iid = iteration_id
        phase = self.catalog.check(phase)
        counted = LLMUsage.read(usage)
        call = LLMCallChange(
            event_id=keyed_event_id(iid, check_change_id(change_id)),
            phase=phase,
            provider=check_provider(provider),
            model=check_optional_text("model", model, MAX_MODEL),
            usage=counted,
            duration_ms=check_duration_ms(duration_ms),
            request_id=check_optional_text("request_id", request_id, MAX_REQUEST_ID),
            batch=check_batch(batch) or (counted is not None and counted.service_tier == "batch"),
            inference_geo=check_optional_text("inference_geo", inference_geo, MAX_GEO),
        )
        if counted is None:
            log.warning(
                "LLM call in %s of iteration %s (model %s): the response carried no usage (%s); recorded as unknown",
                phase,
                iid,
                model,
                type(usage).__name__,
            )
        return call

    @contextmanager
    def track_phase(self, iteration_id: UUID | str, phase: str) -> Iterator[None]:
        """Enter `phase`, time the block, add `<phase>_time_ms` (ms); a block that does not finish fails the iteration.

        Any exception out of the block, `KeyboardInterrupt`, `SystemExit`, `GeneratorExit` (a generator closed
        mid-phase) and task cancellation included, records the phase's time, marks the iteration `failed`
        (error: the exception's message, or `"interrupted: KeyboardInterrupt"` and the like; see
        `failure_message`) and is re-raised unchanged. A failure to record is logged, never raised over it;
        an interruption while recording (a second Ctrl-C) propagates. Raises `InvalidInputError` (terminal
        or unknown phase, bad id) up front, and the errors of `update_phase` on entering the phase.
        """
        iid = parse_iteration_id(iteration_id)
        if self.catalog.check(phase) in TERMINAL_PHASES:
            raise InvalidInputError("phase", phase, "cannot be timed: it is terminal (use update_phase)")
        self.update_phase(iid, phase)
        started = self.clock.monotonic()
        try:
            yield
        except BaseException as exc:
            # Not only Exception: an interrupted phase left `running` would stay so for good.
            elapsed = self._elapsed_ms(started)
            try:
                self.update_metrics(iid, {time_metric(phase): elapsed})
                self.update_phase(iid, Phase.FAILED, error=failure_message(exc))
            except Exception:
                log.warning("could not mark iteration %s failed after %r in %s", iid, exc, phase, exc_info=True)
            raise
        self.update_metrics(iid, {time_metric(phase): self._elapsed_ms(started)})

    def save_iteration(self, record: IterationRecord | Mapping[str, Any], *, change_id: str | None = None) -> UUID:
        """The saving step: store the record under the iteration's id, in the transaction of its event.

        With `record.id` the tracked iteration must exist and match the record's agent and number;
        without it, a new iteration id is made (derived from `change_id` when given) and the iteration is
        started and saved at once. `change_id`: optional idempotency key, as for `update_metrics`; a
        retry returns the same id, and a different record (`created_at` aside) raises `ChangeIdReusedError`.
        """
        parsed = IterationRecord.parse(record)
        key = check_change_id(change_id)
        now = self._now()
        created_at = parsed.created_at or now
        if parsed.id is None:
            new_id = self.clock.new_id() if key is None else keyed_iteration_id(key)
            to_store = parsed.model_copy(update={"id": new_id, "created_at": created_at})
            started_id = None if key is None else keyed_event_id(new_id, key)
            iteration = Iteration.start(new_id, parsed.agent_id, parsed.iteration_number, now, event_id=started_id)
            iteration.mark_saved(
                parsed.iteration_status, now, event_id=None if started_id is None else second_event_id(started_id)
            )
            self._save_new_once(iteration, started_id, key, record=to_store)
            return new_id

        to_store = parsed.model_copy(update={"created_at": created_at})
        save = RecordSave(
            event_id=keyed_event_id(parsed.id, key),
            agent_id=parsed.agent_id,
            iteration_number=parsed.iteration_number,
            status=parsed.iteration_status,
        )
        self._change(parsed.id, save, record=to_store, key=key)
        return parsed.id

    def add_save_listener(self, listener: Callable[[int], None]) -> None:
        """Call `listener(notification_id)` after each save of this tracker (e.g. to refresh read models)."""
        self._ensure_open()
        self._save_listeners.append(listener)

    def remove_save_listener(self, listener: Callable[[int], None]) -> None:
        """Stop calling a listener added with `add_save_listener`."""
        if listener in self._save_listeners:
            self._save_listeners.remove(listener)

    def close(self) -> None:
        """Stop background work (a spool's forwarder finishes the change in hand), then close the store."""
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.close()
        finally:
            self._store.close()

    def migrate(self) -> None:
        """Create the store's tables if they do not exist (safe to run from many processes)."""
        self._store.migrate()

    # -- decided without waiting (the async tracker's path; domain/service/decided.py) ----------------

    def lane_of(self, iteration_id: UUID) -> int:
        """The iteration's lock stripe: changes of iterations in different stripes never wait on each other's
        lock in this process (the async tracker orders its calls per stripe)."""
        return iteration_id.int % _LOCK_STRIPES

    def decide_start(self, agent_id: str, iteration_number: int, iteration_id: UUID | None) -> DecidedChange:
        """`start_iteration` without a `change_id`, up to its events: the new iteration, its events not written.

        Pure Python (no store I/O, no lock). Raises what `start_iteration` raises up front (`InvalidInputError`,
        `DuplicateIterationError` for an id this process knows). Write it, then `settle` it.
        """
        self._ensure_open()
        agent_id = check_agent_id(agent_id)
        iteration_number = check_iteration_number(iteration_number)
        new_id = self.clock.new_id() if iteration_id is None else iteration_id
        if self._store.is_cached(new_id):
            raise DuplicateIterationError(new_id)
        iteration = Iteration.start(new_id, agent_id, iteration_number, self._now())
        events = iteration.take_events()
        return DecidedChange(iteration, events, None, None, None, None, encoded=self._store.encode(events))

    def decide_change(self, iteration_id: UUID, change: Change) -> DecidedChange | None:
        """Apply `change` to this process's copy of the iteration now, without waiting: its events, not written.

        Pure Python: no store I/O, no wait for a lock. Returns None when that is not possible now (another
        thread holds the iteration's lock, the iteration is not in this process's cache, changes wait in a
        spool, the iteration is contended, or the change is a keyed retry): run `apply_change` instead, off the
        event loop. On success the iteration's lock is held until `settle`. Raises the domain's errors
        (`IterationFinishedError`, ...; the copy is then evicted and nothing is written).
        """
        self._ensure_open()
        if not self._writer.writes_through() or self._contention.active(iteration_id):
            return None
        lock = self._locks[iteration_id.int % _LOCK_STRIPES]
        if not lock.acquire(blocking=False):
            return None
        try:
            iteration = self._store.cached(iteration_id)
            if iteration is None or (iteration.keyed_changes and change.event_id in iteration.keyed_changes):
                lock.release()
                return None
            base = iteration.last_event_id
            change.apply(iteration, self._now_after(iteration))
            events = iteration.take_events()
            encoded = self._store.encode(events)
        except BaseException:
            self._store.evict(iteration_id)
            lock.release()
            raise
        return DecidedChange(iteration, events, change, None, base, lock, encoded)

    def settle(self, decided: DecidedChange, outcome: int | Exception | None) -> bool:
        """Finish a decided change once the writer answered (`outcome`: what `IterationWriter.append_many` gave
        for it); releases the iteration's lock. Does store I/O: call it off the event loop.

        Returns True when the change is done (committed, kept by the writer, or found committed after a lost
        acknowledgement), False when another writer took its version first: run `apply_change` then (it
        re-loads and re-applies). Raises what the change's write raised (`StoreUnavailableError` unless a spool
        kept it, `DuplicateIterationError` for a start whose id is taken, ...).
        """
        try:
            if isinstance(outcome, Exception):
                self._store.evict(decided.iteration_id)
                return self._settle_failed(decided, outcome)
            self._store.keep(decided.iteration)
            self._saved(outcome)
            return True
        finally:
            if decided.lock is not None:
                decided.lock.release()

    def _settle_failed(self, decided: DecidedChange, error: Exception) -> bool:
        """`settle` of a change whose write raised `error` (the copy is evicted), as `_change` would treat it."""
        iid, change = decided.iteration_id, decided.change
        try:
            if not isinstance(error, VersionTakenError):
                raise error
            if self._store.holds(decided.events):  # our own commit, whose acknowledgement was lost
                if change is not None:
                    self._store.keep(decided.iteration)
                return True
        except StoreUnavailableError:
            # The store is away (or the commit's outcome unknown): a spool keeps the change itself.
            if change is not None and self._keep_change(iid, change, decided.record, outage=True):
                return True
            raise
        if change is None:
            raise DuplicateIterationError(iid) from error
        self._contention.seen(iid)
        self.conflicts_retried += 1
        return False

    def apply_change(self, iteration_id: UUID, change: Change, key: str | None = None) -> None:
        """Apply and save `change` the way every sync call does (load, apply, save, retry a lost race; may wait
        on locks and the store): for a change `decide_change` could not take, or that lost its race."""
        self._change(iteration_id, change, key=key)

    # -- queries (domain/service/reads.py) ------------------------------------------------

    def get_iteration(
        self, iteration_id: UUID | str, *, version: int | None = None, at: datetime | None = None
    ) -> IterationState:
        """The iteration's state now, as of one of its versions, or as of an instant (audit replay).

        `at` (timezone-aware) selects the last version whose timestamp is at or before it. Raises
        `IterationNotFoundError`, `InvalidInputError` (version or at out of range), `StoreError`.
        """
        iid = parse_iteration_id(iteration_id)
        self._ensure_open()
        return self._reads.get_iteration(iid, version=version, at=at)

    def version_at(self, iteration_id: UUID | str, at: datetime) -> int:
        """The last version of the iteration whose event timestamp is at or before `at`."""
        iid = parse_iteration_id(iteration_id)
        self._ensure_open()
        return self._reads.version_at(iid, at)

    def history(self, iteration_id: UUID | str) -> list[Iteration.Event]:
        """The iteration's immutable events, oldest first (`IterationNotFoundError` if it has none)."""
        iid = parse_iteration_id(iteration_id)
        self._ensure_open()
        return self._reads.history(iid)

    def get_record(self, iteration_id: UUID | str) -> IterationRecord | None:
        """The record the saving step stored under this id, if any."""
        iid = parse_iteration_id(iteration_id)
        self._ensure_open()
        return self._store.record(iid)

    # -- internals --------------------------------------------------------------------

    def _tell_save_listeners(self, notification_id: int) -> None:
        """Call each save listener with the last notification id saved (by the host, or by a forwarder)."""
        for listener in list(self._save_listeners):
            try:
                listener(notification_id)
            except Exception:
                # A listener's failure must never fail the host's tracked change, already committed.
                log.warning("save listener %r failed", listener, exc_info=True)

    def _forget_between_changes(self, iteration_id: UUID) -> None:
        """Drop this process's copy, but not while a host thread is changing it (brief: no I/O inside)."""
        with self._lock(iteration_id):
            self._store.evict(iteration_id)

    def _now(self) -> datetime:
        """The clock's time; a clock that returns anything but a timezone-aware datetime is refused (nothing written).

        Raises `InvalidInputError` naming `clock` and the value. Cheap: a type check and one utcoffset() call.
        """
        now = self.clock.now()
        if not isinstance(now, datetime) or now.utcoffset() is None:
            raise InvalidInputError("clock", now, "now() must return a timezone-aware datetime")
        return now

    def _now_after(self, iteration: Iteration) -> datetime:
        # Event times never run backwards within an iteration, even across hosts' clocks.
        now = self._now()
        last = iteration.modified_on
        return now if now >= last else last

    def _elapsed_ms(self, started: float) -> float:
        return round(max(0.0, self.clock.monotonic() - started) * 1000.0, 3)

    def _ensure_open(self) -> None:
        if self._closed:
            raise StoreError("the tracker is closed")

    def _lock(self, iteration_id: UUID) -> threading.Lock:
        """The lock guarding this iteration's cached copy in this process (striped by id)."""
        return self._locks[iteration_id.int % _LOCK_STRIPES]

    def _save_new(self, iteration: Iteration, record: IterationRecord | None = None) -> None:
        self._ensure_open()
        if self._store.is_cached(iteration.id):
            # Known here, so taken: refused at once, also while the store is away (the copy stays the host's).
            raise DuplicateIterationError(iteration.id)
        events = iteration.take_events()
        try:
            notification_id = self._writer.append(events, None, record)
        except VersionTakenError as e:
            if not self._store.holds(events):
                raise DuplicateIterationError(iteration.id) from e
            return
        self._store.keep(iteration)
        self._saved(notification_id)

    def _save_new_once(
        self, iteration: Iteration, started_id: UUID | None, key: str | None, record: IterationRecord | None = None
    ) -> None:
        """`_save_new`; for a keyed start (`started_id`), a duplicate that is this very start is a retry."""
        fingerprint = Iteration.Started.fingerprint_of(
            agent_id=iteration.agent_id, iteration_number=iteration.iteration_number
        )
        try:
            self._save_new(iteration, record)
        except DuplicateIterationError:
            if started_id is None:
                raise
            with self._lock(iteration.id):
                stored = self._store.load(iteration.id)
                if started_id not in stored.keyed_changes:
                    raise  # another start took this id
                self._confirm_retry(stored, started_id, (fingerprint,), record, key)

    def _confirm_retry(
        self,
        iteration: Iteration,
        event_id: UUID,
        fingerprints: tuple[int, ...],
        record: IterationRecord | None,
        key: str | None,
    ) -> None:
        """The keyed change whose event `iteration` holds was applied already: this call is its retry, unless
        it says something else (`ChangeIdReusedError`; the record is compared as stored, `created_at` aside)."""
        same = iteration.keyed_changes[event_id] in fingerprints
        if same and record is not None:
            stored = self._store.record(iteration.id)  # None while it waits in a spool: not comparable yet
            same = stored is None or stored.model_dump(exclude={"created_at"}) == record.model_dump(
                exclude={"created_at"}
            )
        if not same:
            raise ChangeIdReusedError(
                "change_id",
                key,
                f"this key already applied a different change to iteration {iteration.id}; nothing was written",
            )

    def _saved(self, notification_id: int | None) -> None:
        if notification_id is not None and self._save_listeners:
            self._tell_save_listeners(notification_id)

    def _change(
        self, iteration_id: UUID, change: Change, record: IterationRecord | None = None, *, key: str | None = None
    ) -> None:
        """Apply `change` to the iteration and save; on a version conflict re-load and re-apply it.

        A writer with a spool may keep the change itself when the iteration cannot be loaded here (the
        store is away and this process has no copy): the call returns and nothing is lost.
        """
        self._ensure_open()  # before the writer is consulted: a closed tracker neither reads nor spools
        with self._locks[iteration_id.int % _LOCK_STRIPES]:  # self._lock(iteration_id), inlined
            if self._writer_keeps and self._writer.must_keep_change(
                iteration_id, cached=self._store.is_cached(iteration_id)
            ):
                self._keep_change(iteration_id, change, record, outage=False)
                return
            queue_at_once = self._contention.active(iteration_id)
            for attempt in range(1, self.max_attempts + 1):
                done = False
                queued = queue_at_once or attempt > 1
                try:
                    if not queued:
                        done = self._attempt(iteration_id, change, record, catch_up=False, key=key)
                    else:
                        if not self._store.is_cached(iteration_id):
                            # Read the whole history before taking the lock (a lost try evicted the copy it
                            # changed): under the lock only what came since is read, so it is held briefly.
                            self._store.load(iteration_id)
                        # After a lost race (or while others write this iteration), the change is saved holding
                        # the store's lock, under which no other writer can commit: it cannot lose the race.
                        with self._store.serialised(iteration_id):
                            done = self._attempt(iteration_id, change, record, catch_up=True, key=key)
                except StoreUnavailableError:
                    if done:
                        return  # written (or spooled); only releasing the retry lock failed: never keep it twice
                    # Loading, checking a conflict, or taking or releasing the retry lock needed the store,
                    # which is away: keep the change itself (its event id makes a committed one land once).
                    if not self._keep_change(iteration_id, change, record, outage=True):
                        raise
                    return
                if done:
                    return
                self._contention.seen(iteration_id)
                self.conflicts_retried += 1
                if attempt < self.max_attempts:
                    self._retry.pause(attempt)
        raise ConcurrencyError(iteration_id, self.max_attempts)

    def _attempt(
        self, iteration_id: UUID, change: Change, record: IterationRecord | None, *, catch_up: bool, key: str | None
    ) -> bool:
        """One load-apply-save; False when another writer took the version (the caller re-loads and retries).

        With `catch_up` (under the store's lock) this process's copy is first brought up to the stored version.
        """
        if catch_up and self._store.catch_up(iteration_id):
            self._contention.seen(iteration_id)  # another writer changed it since this process's last change
        # The cached copy itself (no copy per change): any failure below evicts it.
        iteration = self._store.load(iteration_id)
        if iteration.keyed_changes and change.event_id in iteration.keyed_changes:
            # A retry of a keyed change that landed (its first call may have raised OutcomeUnknownError).
            self._confirm_retry(iteration, change.event_id, change.fingerprints(), record, key)
            return True
        try:
            base = iteration.last_event_id
            change.apply(iteration, self._now_after(iteration))
            events = iteration.take_events()
            notification_id = self._writer.append(events, change, record, base)
        except VersionTakenError:
            self._store.evict(iteration_id)
            if self._store.holds(events):
                # Our own commit, whose acknowledgement was lost.
                self._store.keep(iteration)
                return True
            return False
        except BaseException:
            self._store.evict(iteration_id)
            raise
        self._store.keep(iteration)
        self._saved(notification_id)
        return True

    def _keep_change(self, iteration_id: UUID, change: Change, record: IterationRecord | None, *, outage: bool) -> bool:
        """Hand the change itself to the writer (its events are made when the store answers)."""
        self._store.evict(iteration_id)
        kept = self._writer.keep_change(iteration_id, change, self._now(), record, outage=outage)
        if kept and outage:
            log.debug("store unavailable, keeping a change of %s until it answers", iteration_id)
        return kept
