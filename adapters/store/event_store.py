"""The tracker's `IterationStore` port on eventsourcing: its application, repository, cache and recorder.

The library's `Application` is used inside this adapter (composition): the tracker exposes only its own
operations, and nothing it returns is the live cached aggregate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from functools import wraps
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    Mapper,
    OperationalError,
    StoredEvent,
)
from eventsourcing.utils import Environment

from itertrack.adapters.store.group_commit import DEFAULT_MAX_BYTES, DEFAULT_MAX_CHANGES, GroupCommit
from itertrack.adapters.store.record_store import IterationRecordStore
from itertrack.adapters.store.unavailable import (
    CommitOutcomeUnknown,
    commit_may_have_landed,
    store_unavailable_as_typed_error,
)
from itertrack.domain.model.errors import IterationNotFoundError, StoreConfigError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.service.store_ports import IterationStore, VersionTakenError

log = logging.getLogger("itertrack")
_T = TypeVar("_T")
_P = ParamSpec("_P")


def _typed_errors(
    method: Callable[Concatenate[EventSourcedStore, _P], _T],
) -> Callable[Concatenate[EventSourcedStore, _P], _T]:
    """The store method's failures as typed errors (unavailable.py), naming the store as its URL shows it."""

    @wraps(method)
    def typed(self: EventSourcedStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(self, *args, **kwargs)
        except Exception:
            # Translated only when it fails: entering the context manager on every call cost ~2 us per change.
            with store_unavailable_as_typed_error(self.shown):
                raise
            raise  # not translated (the context manager lets it through): unchanged

    return typed


class TrackerApplication(Application[UUID]):
    """eventsourcing's application over a factory the composition root already opened.

    Named `PerformanceTracker` so the library's application-prefixed settings keep their names.
    """

    name = "PerformanceTracker"
    env: ClassVar[dict[str, str]] = {
        # Keep aggregates cached and trust the cache: the store's (id, version) key detects a
        # stale copy at save time, and only then is the iteration re-loaded.
        "AGGREGATE_CACHE_MAXSIZE": "10000",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        # No copy per command: commands run under the tracker's per-iteration lock, and any failure
        # after the cached copy may have changed evicts it.
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }

    def __init__(self, factory: InfrastructureFactory[Any], env: Mapping[str, str]) -> None:
        self._opened_factory = factory
        super().__init__(env=dict(env))

    def construct_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        return self._opened_factory


class EventSourcedStore(IterationStore):
    """Iterations in an eventsourcing event store, with the library's aggregate cache in front."""

    def __init__(
        self,
        factory: InfrastructureFactory[Any],
        env: Mapping[str, str],
        *,
        shown: str = "the store",
        group_max_changes: int = DEFAULT_MAX_CHANGES,
        group_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.shown = shown  # the store as errors name it (its redacted URL)
        self.app = TrackerApplication(factory, env)
        # The library's aggregate cache (None when the settings turn it off), read on every tracked change.
        repository = self.app.repository
        self._cache = repository.cache
        # The cache `load` may answer from itself: the repository's `get` then only looks it up.
        self._cache_as_is = None if repository.fastforward or repository.deepcopy_from_cache else repository.cache
        recorder = self.app.recorder
        if not isinstance(recorder, IterationRecordStore):
            self.app.close()
            raise StoreConfigError("store", type(recorder).__name__, "recorder cannot store iteration records")
        self.records: IterationRecordStore = recorder
        # Concurrent appends share transactions (group_commit.py); a thread inside `serialised` commits alone.
        self.group = GroupCommit(
            self.insert,
            self.insert_many,
            max_changes=group_max_changes,
            max_bytes=group_max_bytes,
            bypass=self.records.in_serialised,
        )

    @property
    def factory(self) -> InfrastructureFactory[Any]:
        """The library's infrastructure factory (its datastore is shared with the read-model views)."""
        return self.app.factory

    @property
    def recorder(self) -> ApplicationRecorder:
        """The library's application recorder (events, notifications and iteration records)."""
        return self.app.recorder

    @property
    def mapper(self) -> Mapper[UUID]:
        """Stored events to domain events and back."""
        return self.app.mapper

    def _once_more_if_closed(self, call: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a store call; if the server had closed the pooled connection it used (a restart, a failover),
        drop the pool's broken connections and run it once more on a fresh one.

        Safe for writes too: an append whose commit landed before its connection died meets its own rows
        on the retry (`VersionTakenError`), and the tracker recognises them by their event ids.
        """
        try:
            return call(*args, **kwargs)
        except (OperationalError, InterfaceError) as e:
            if not self.records.closed_by_server(e):
                raise
            log.info("a pooled connection was closed by the server; retrying once on a fresh one: %s", e)
            self.records.drop_broken_connections()
            if not commit_may_have_landed(e):  # also when a clean-up's error replaced the recorder's
                return call(*args, **kwargs)
            try:
                return call(*args, **kwargs)
            except IntegrityError:
                raise  # its own rows, or another writer's: the caller tells which (VersionTakenError)
            except Exception as retry_error:
                # The first attempt may have committed: whatever kept the retry from answering (no connection to
                # be had, say), its outcome is still unknown, never "not written".
                raise CommitOutcomeUnknown(f"{e}; the retry on a fresh connection failed too: {retry_error}") from e

    @_typed_errors
    def load(self, iteration_id: UUID) -> Iteration:
        cache = self._cache_as_is
        if cache is not None:
            # What the repository's `get` does for a cached aggregate when it neither fast-forwards nor deep-copies,
            # without its layers: this is on the path of every tracked change.
            try:
                return cast(Iteration, cache.get(iteration_id))
            except KeyError:
                pass
        try:
            iteration: Iteration = self._once_more_if_closed(lambda: self.app.repository.get(iteration_id))
        except AggregateNotFoundError:
            raise IterationNotFoundError(iteration_id) from None
        return iteration

    def cached(self, iteration_id: UUID) -> Iteration | None:
        cache = self._cache_as_is
        if cache is None:
            return None
        try:
            return cast(Iteration, cache.get(iteration_id))
        except KeyError:
            return None

    @store_unavailable_as_typed_error()
    def catch_up(self, iteration_id: UUID) -> int:
        cache = self._cache
        if cache is None:
            return 0
        try:
            cached = cast(Iteration, cache.get(iteration_id))
        except KeyError:
            return 0
        newer = self.events(iteration_id, gt=cached.version)
        try:
            for event in newer:
                event.mutate(cached)
        except BaseException:
            self.evict(iteration_id)
            raise
        return len(newer)

    def is_cached(self, iteration_id: UUID) -> bool:
        cache = self._cache
        return cache is not None and iteration_id in cache.cache

    def keep(self, iteration: Iteration) -> None:
        cache = self._cache
        if cache is not None:
            cache.put(iteration.id, iteration)

    def evict(self, iteration_id: UUID) -> None:
        cache = self._cache
        if cache is not None:
            with suppress(KeyError):
                cache.get(iteration_id, evict=True)

    @_typed_errors
    def events(self, iteration_id: UUID, *, gt: int | None = None, lte: int | None = None) -> list[Iteration.Event]:
        return self._once_more_if_closed(
            lambda: cast(list[Iteration.Event], list(self.app.events.get(iteration_id, gt=gt, lte=lte)))
        )

    def stored(self, events: Sequence[Iteration.Event]) -> list[StoredEvent]:
        """The events as the recorder stores them."""
        return [self.app.mapper.to_stored_event(e) for e in events]

    @_typed_errors
    def insert(self, stored: Sequence[StoredEvent], record: IterationRecord | None = None) -> int | None:
        """Append stored events (and the record) in one transaction; the last notification id.

        Raises `VersionTakenError` when a version (or the record's id) is taken.
        """
        try:
            ids = self._once_more_if_closed(self.app.recorder.insert_events, list(stored), iteration_record=record)
        except IntegrityError as e:
            raise VersionTakenError(str(e)) from e
        return max(ids) if ids else None

    @_typed_errors
    def insert_many(self, stored: Sequence[StoredEvent], records: Sequence[IterationRecord]) -> Sequence[int] | None:
        """Append several changes' stored events and records in one transaction; the notification ids, in
        stored-event order (None from a recorder that returns none).

        Raises `VersionTakenError` when a version (or a record's id) is taken: which change's, it does not say.
        """
        try:
            return self._once_more_if_closed(
                lambda: self.app.recorder.insert_events(list(stored), iteration_records=list(records))
            )
        except IntegrityError as e:
            raise VersionTakenError(str(e)) from e

    def append(self, events: Sequence[Iteration.Event], record: IterationRecord | None) -> int | None:
        """Append one change's events (and the record) atomically; the last notification id of its events.

        Changes appended concurrently from several threads share a transaction (group commit); each call
        returns once the transaction holding its change has committed. Raises `VersionTakenError`,
        `StoreUnavailableError` (`OutcomeUnknownError` when the commit may have landed) as `insert` does.
        """
        return self.group.append(self.stored(events), record)

    def encode(self, events: Sequence[Iteration.Event]) -> list[StoredEvent]:
        return self.stored(events)

    def append_many(
        self, changes: Sequence[tuple[Sequence[Iteration.Event], IterationRecord | None, object]]
    ) -> list[int | Exception | None]:
        """Append several changes, each atomically, sharing transactions (with other threads' changes too):
        (events, record, their `encode`d form or None) per change. Returns per change its last notification id,
        or the error `append` would have raised for it."""
        return self.group.append_many(
            [
                (encoded if isinstance(encoded, list) else self.stored(events), record)
                for events, record, encoded in changes
            ]
        )

    def holds(self, events: Sequence[Iteration.Event]) -> bool:
        return self.holds_stored(events[0].originator_id, self.stored(events))

    @_typed_errors
    def tip(self, iteration_id: UUID) -> tuple[int, UUID | None]:
        """The iteration's last stored version and event id ((0, None) when it has no events): one indexed read."""
        rows = self._once_more_if_closed(lambda: self.app.recorder.select_events(iteration_id, desc=True, limit=1))
        if not rows:
            return 0, None
        last = cast(Iteration.Event, self.app.mapper.to_domain_event(rows[0]))
        return last.originator_version, last.event_id

    @_typed_errors
    def holds_stored(self, iteration_id: UUID, events: Sequence[StoredEvent]) -> bool:
        """Whether the store holds exactly these rows at their versions."""
        first, last = events[0].originator_version, events[-1].originator_version
        rows = self.app.recorder.select_events(iteration_id, gt=first - 1, lte=last)
        return [(s.originator_version, s.topic, s.state) for s in rows] == [
            (s.originator_version, s.topic, s.state) for s in events
        ]

    def serialised(self, iteration_id: UUID) -> AbstractContextManager[None]:
        return _translated(self.records.serialised(iteration_id), self.shown)

    @_typed_errors
    def record(self, iteration_id: UUID) -> IterationRecord | None:
        row = self._once_more_if_closed(lambda: self.records.select_iteration_record(iteration_id))
        return None if row is None else IterationRecord.model_validate(row)

    @_typed_errors
    def migrate(self) -> None:
        self.records.migrate()

    def drop_broken_connections(self) -> None:
        """After a failed call: discard pooled connections a restarted server closed."""
        self.records.drop_broken_connections()

    def close(self) -> None:
        self.app.close()


class _translated(AbstractContextManager[None]):  # noqa: N801  # used as a function
    """A context manager whose connection errors (on enter and exit) become `StoreUnavailableError`."""

    def __init__(self, inner: AbstractContextManager[None], shown: str) -> None:
        self._inner = inner
        self._shown = shown

    def __enter__(self) -> None:
        with store_unavailable_as_typed_error(self._shown):
            self._inner.__enter__()

    def __exit__(self, *exc: Any) -> bool | None:
        with store_unavailable_as_typed_error(self._shown):
            return self._inner.__exit__(*exc)
