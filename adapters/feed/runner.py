"""Running a named consumer: the library's projection runner over the tracker's log, from the consumer's checkpoint.

`run_consumer(tracker, consumer)` delivers every event of the log after the consumer's checkpoint, in log order,
then stops (or, with `follow`, keeps delivering new events until stopped). The runner is the views' `BatchRunner`
(eventsourcing's `BaseProjectionRunner`: the polling subscription on SQLite, LISTEN/NOTIFY on PostgreSQL); with
`follow`, the views' `Follower` starts another after an outage, with a capped, jittered back-off, from the
checkpoint. One runner per consumer name and store at a time (a file lock beside SQLite, an advisory lock on
PostgreSQL).

Delivery guarantees:

- `TransactionalConsumer`: the events the subscription holds (up to `batch_size`) are handed to `handle_in` in
  one transaction of the store's database that also moves the checkpoint past them, by compare-and-set: their
  effects commit once, with the checkpoint, or not at all (exactly-once effect, even under kill -9). On
  PostgreSQL that transaction (and `migrate`'s, and `reset`'s) resolves unqualified table names in the store's
  schema first (`SET LOCAL search_path`), so a consumer's tables live beside the events, and sends the batch's
  statements in psycopg's pipeline mode; a server error there (which surfaces only when the pipeline syncs) rolls
  the batch back and it is tried again without the pipeline, so the failure is pinned on its event.
- `Consumer`: `handle` is called for each event, and the checkpoint moves after it returns, in batches: when
  `checkpoint_every` events (default 1000) were handled since the last move, when `checkpoint_interval` seconds
  (default 1.0) passed, when the subscription has nothing more at hand (caught up), and when the runner stops.
  After a crash the consumer is handed again the events handled since the last move (at most about
  `checkpoint_every` events or `checkpoint_interval` seconds' worth): at-least-once, each with the same
  `delivery.key`.
- A handler that raises stops its consumer at that event: the checkpoint stays just before it, the consumer is
  marked failed with the error and the position (logged once), and the run raises `ConsumerFailedError`. Every
  later run refuses to start until an operator retries (`ConsumerTables.retry`) or skips the event (`skip`).
  For a `TransactionalConsumer`, an error that is a store outage (the database went away under `handle_in`) is
  no handler failure: the transaction rolls back and the follower retries after its back-off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, NoReturn

from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.feed.checkpoints import ConsumerCheckpoint, ConsumerTables, Failure
from itertrack.adapters.feed.consumer import CONSUMER_NAME, Consumer, Delivery, TransactionalConsumer
from itertrack.adapters.views.follower import Follower, Verdict, verdict
from itertrack.adapters.views.lock import ProjectionLock
from itertrack.adapters.views.runner import BatchRunner
from itertrack.domain.model.errors import InvalidInputError, IterationError, StoreConfigError, StoreError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.projections.projection import DEFAULT_BATCH_SIZE, PositionConflictError

log = logging.getLogger("itertrack.consumer")

CHECKPOINT_EVERY = 1000  # events a plain consumer handles between two moves of its checkpoint, at most
CHECKPOINT_INTERVAL_S = 1.0  # seconds between two moves of a plain consumer's checkpoint, at most
AGENT_CACHE_SIZE = 10_000  # iterations whose agent is remembered


class ConsumerFailedError(IterationError):
    """Raised when a consumer's handler raised on an event, or a run finds the consumer failed from before."""

    def __init__(self, name: str, position: int, error: str, *, logged: bool = False) -> None:
        self.name, self.position, self.error = name, position, error
        self.logged = logged  # the failure was logged (once) where it happened
        super().__init__(
            f"consumer {name!r} is stopped at position {position}: {error}; fix the cause, then "
            f"`itertrack consumers retry {name}` (handle it again) or "
            f"`itertrack consumers skip {name} --position {position} --reason TEXT`"
        )


def one_line(error: BaseException) -> str:
    """An error as one line: its type and message, whitespace folded, at most 1000 characters."""
    text = " ".join(str(error).split())
    line = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return line if len(line) <= 1000 else line[:999] + "…"


class AgentIds:
    """The agent of each event's iteration: `Started` carries it; for another event, a bounded LRU cache, and on a
    miss one indexed read of the iteration's first event through the tracker's store."""

    def __init__(self, tracker: PerformanceTracker, size: int = AGENT_CACHE_SIZE) -> None:
        self._tracker = tracker
        self._size = size
        self._known: OrderedDict[Any, str] = OrderedDict()

    def _remember(self, iteration_id: Any, agent_id: str) -> None:
        self._known[iteration_id] = agent_id
        self._known.move_to_end(iteration_id)
        if len(self._known) > self._size:
            self._known.popitem(last=False)

    def of(self, event: Iteration.Event) -> str:
        """The agent id of `event`'s iteration; `StoreError` if the log has no `Started` for it."""
        iid = event.originator_id
        if isinstance(event, Iteration.Started):
            self._remember(iid, event.agent_id)
            return event.agent_id
        known = self._known.get(iid)
        if known is not None:
            self._known.move_to_end(iid)
            return known
        store = store_of(self._tracker)
        stored = store.recorder.select_events(iid, limit=1)
        first = store.mapper.to_domain_event(stored[0]) if stored else None
        if not isinstance(first, Iteration.Started):
            raise StoreError(f"iteration {iid} has no Started event: its agent is unknown")
        self._remember(iid, first.agent_id)
        return first.agent_id


class _HandlerFailedError(Exception):
    """A handler raised on `delivery` (carried out of the transaction, which rolls back)."""

    def __init__(self, delivery: Delivery, error: Exception) -> None:
        super().__init__(str(error))
        self.delivery, self.error = delivery, error


class ConsumerProjection(Projection[ConsumerCheckpoint]):
    """Delivers batches of the log to one consumer and moves its checkpoint (see the module docstring)."""

    name = "consumer"

    def __init__(
        self,
        consumer: Consumer,
        checkpoint: ConsumerCheckpoint,
        agents: AgentIds,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        checkpoint_every: int = CHECKPOINT_EVERY,
        checkpoint_interval: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        super().__init__(view=checkpoint)
        self.consumer = consumer
        self.checkpoint = checkpoint
        self.agents = agents
        self.batch_size = batch_size
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.wanted = frozenset(consumer.event_types)
        self.handled = 0  # deliveries this projection handled (or, transactionally, committed)
        self._position: int | None = None  # the checkpoint as last read or written
        self._done = 0  # plain consumers: the last position handled (ahead of the checkpoint until a flush)
        self._flushed_at = time.monotonic()

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """The library's one-event entry point: a batch of one."""
        self.process_batch([(domain_event, tracking)])

    def process_batch(self, items: Sequence[tuple[Any, Tracking]]) -> None:
        """Deliver consecutive events of the log past the checkpoint; raises `ConsumerFailedError` when the handler
        raised (the consumer is then marked failed at that event)."""
        if self._position is None:
            self._position = self._done = self.checkpoint.position()
        pending = [(e, t.notification_id) for e, t in items if t.notification_id > self._done]
        if not pending:
            return
        if isinstance(self.consumer, TransactionalConsumer):
            self._in_transaction(self.consumer, pending)
        else:
            self._one_by_one(pending, caught_up=len(items) < self.batch_size)

    def _deliveries(self, pending: Sequence[tuple[Any, int]]) -> list[tuple[int, Delivery | None]]:
        """Each pending event's position, with its delivery (None for a type the consumer does not want)."""
        out: list[tuple[int, Delivery | None]] = []
        for event, position in pending:
            agent = self.agents.of(event)  # also remembers the agent of every `Started`, wanted or not
            wanted = not self.wanted or type(event).__name__ in self.wanted
            delivery = (
                Delivery(event, position, f"{event.originator_id}:{event.originator_version}", agent)
                if wanted
                else None
            )
            out.append((position, delivery))
        return out

    # -- exactly-once: in the checkpoint's transaction -------------------------------------------------

    def _in_transaction(self, consumer: TransactionalConsumer, pending: Sequence[tuple[Any, int]]) -> None:
        deliveries = self._deliveries(pending)

        def work(upto: int) -> Callable[[Any], None]:
            return lambda cursor: self._write(consumer, deliveries[:upto], cursor)

        upto = len(deliveries)
        failure: Failure | None = None
        cause: _HandlerFailedError | None = None
        # First in one go (pipelined on PostgreSQL); after a server error no statement can be blamed for, again
        # statement by statement, so the failure is pinned on its event.
        pipelined = True
        while True:
            expected = self._position
            assert expected is not None
            new = deliveries[upto - 1][0] if upto else expected
            try:
                self.checkpoint.commit(expected, new, work(upto), failure=failure, pipelined=pipelined)
            except _HandlerFailedError as e:
                # Everything rolled back: commit the events before the failing one, and the failure, at once.
                index = next(i for i, (_, d) in enumerate(deliveries) if d is e.delivery)
                upto, failure, cause = index, Failure(e.delivery.position, one_line(e.error)), e
                continue
            except Exception as e:
                if not pipelined or verdict(e)[0] is Verdict.RETRY or isinstance(e, PositionConflictError):
                    raise
                pipelined = False
                continue
            break
        self._position = self._done = new
        self.handled += sum(d is not None for _, d in deliveries[:upto])
        if cause is not None:
            self._failed(cause.delivery, cause.error)

    def _write(
        self, consumer: TransactionalConsumer, deliveries: Sequence[tuple[int, Delivery | None]], cursor: Any
    ) -> None:
        """`handle_in` for each wanted delivery; a handler's error is carried out as `_HandlerFailedError`, a store
        outage as itself."""
        dialect = self.checkpoint.dialect
        for _, delivery in deliveries:
            if delivery is None:
                continue
            try:
                consumer.handle_in(delivery, cursor, dialect)
            except Exception as e:
                if verdict(e)[0] is Verdict.RETRY:
                    raise  # the store went away: no failure of the handler's
                raise _HandlerFailedError(delivery, e) from e

    # -- at-least-once: the checkpoint after the handler -----------------------------------------------

    def _one_by_one(self, pending: Sequence[tuple[Any, int]], *, caught_up: bool) -> None:
        deliveries = self._deliveries(pending)
        if type(self.consumer).handle_batch is Consumer.handle_batch:
            self._each(deliveries)  # no batch of its own: one by one, stopping at the one that fails
        else:
            self._batch(deliveries)
        assert self._position is not None
        if (
            caught_up
            or self._done - self._position >= self.checkpoint_every
            or time.monotonic() - self._flushed_at >= self.checkpoint_interval
        ):
            self.flush()

    def _batch(self, deliveries: Sequence[tuple[int, Delivery | None]]) -> None:
        """`handle_batch` on the wanted deliveries; when it fails (not an outage), one by one to pin the event."""
        wanted = [d for _, d in deliveries if d is not None]
        try:
            if wanted:
                self.consumer.handle_batch(wanted)
        except Exception as e:
            if verdict(e)[0] is Verdict.RETRY:
                raise  # an outage of the handler's own service (the relay's NATS) or the store: try again later
            self._each(deliveries)  # find the event that fails, handling the ones before it again
        else:
            self.handled += len(wanted)
            if deliveries:
                self._done = deliveries[-1][0]

    def _each(self, deliveries: Sequence[tuple[int, Delivery | None]]) -> None:
        """`handle` one by one; the first that raises stops the consumer there (after the ones before it)."""
        for position, delivery in deliveries:
            if delivery is not None:
                try:
                    self.consumer.handle(delivery)
                except Exception as e:
                    if verdict(e)[0] is Verdict.RETRY:
                        raise
                    assert self._position is not None
                    failure = Failure(position, one_line(e))
                    self.checkpoint.commit(self._position, self._done, failure=failure)
                    self._position = self._done
                    self._failed(delivery, e)
                self.handled += 1
            self._done = position

    def flush(self) -> None:
        """Move a plain consumer's checkpoint to the last event it handled (nothing if it is there already)."""
        if self._position is not None and self._done > self._position:
            self.checkpoint.commit(self._position, self._done)
            self._position = self._done
        self._flushed_at = time.monotonic()

    def _failed(self, delivery: Delivery, error: Exception) -> NoReturn:
        line = one_line(error)
        log.error(
            "consumer %s: handler failed at position %d (%s %s); stopped there: %s",
            self.consumer.name,
            delivery.position,
            delivery.event_type,
            delivery.key,
            line,
        )
        raise ConsumerFailedError(self.consumer.name, delivery.position, line, logged=True) from error


class ConsumerRunner(BatchRunner):
    """The library's projection runner delivering the log to one consumer from its checkpoint (the views'
    batching runner); on exit, a plain consumer's checkpoint moves to the last event it handled."""

    def __init__(
        self,
        tracker: PerformanceTracker,
        consumer: Consumer,
        checkpoint: ConsumerCheckpoint,
        *,
        agents: AgentIds | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        poll_interval: float | None = None,
        checkpoint_every: int = CHECKPOINT_EVERY,
        checkpoint_interval: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        self.checkpoint = checkpoint
        self.projection = ConsumerProjection(
            consumer,
            checkpoint,
            agents or AgentIds(tracker),
            batch_size=batch_size,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
        )
        super().__init__(tracker, self.projection, checkpoint, poll_interval=poll_interval)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        """Stop the runner; then move a plain consumer's checkpoint to the last event it handled (best effort:
        if the store is away, those events are delivered again)."""
        try:
            super().__exit__(exc_type, exc_val, exc_tb)
        finally:
            if not isinstance(self.projection.consumer, TransactionalConsumer):
                try:
                    self.projection.flush()
                except Exception as e:  # the store is away: redelivered from the checkpoint on the next run
                    log.debug("consumer %s: checkpoint not moved on stop: %s", self.projection.consumer.name, e)


def checked_name(consumer: Consumer) -> str:
    """The consumer's name; `InvalidInputError` naming it if it does not match CONSUMER_NAME."""
    name = getattr(consumer, "name", None)
    if not isinstance(name, str) or CONSUMER_NAME.match(name) is None:
        raise InvalidInputError("name", name, f"must match {CONSUMER_NAME.pattern}")
    return name


def consumer_lock(tracker: PerformanceTracker, name: str) -> ProjectionLock:
    """The lock that keeps one runner of consumer `name` on the tracker's store."""
    factory = store_of(tracker).factory
    make = getattr(factory, "consumer_lock", None)
    if make is None:
        raise StoreConfigError("store", type(factory).__name__, "has no consumers")
    lock = make(name)
    assert isinstance(lock, ProjectionLock)
    return lock


def run_consumer(
    tracker: PerformanceTracker,
    consumer: Consumer,
    *,
    follow: bool = False,
    stop: threading.Event | None = None,
    reset: bool = False,
    wait: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    poll_interval: float | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
    checkpoint_interval: float = CHECKPOINT_INTERVAL_S,
    on_start: Any = None,
) -> int:
    """Deliver the log to `consumer` from its checkpoint: up to the log's end as of the call (or, with `follow`,
    until `stop` is set, through outages); returns how many deliveries it handled. Calls `consumer.close()` at the
    end.

    With `reset`, the checkpoint first goes back to 0 (and failures are cleared): a `TransactionalConsumer` with a
    `reset(cursor, sql_dialect)` method has it called in that same transaction, to empty what it wrote; another
    consumer is simply handed every event again. `wait` waits for another runner of the same name to stop instead
    of refusing. `on_start()` is called once the lock is held and the checkpoint read (tests, the CLI's banner).

    Raises `InvalidInputError` for a bad name, `ProjectionBusyError` when another runner of this name holds the
    lock, `ConsumerFailedError` when a handler raised (or the consumer is failed from an earlier run),
    `StoreConfigError` for a store without a database (memory), and the store's typed errors (without `follow`,
    an outage too).
    """
    name = checked_name(consumer)
    stop = stop or threading.Event()
    try:
        checkpoint = ConsumerCheckpoint(ConsumerTables.of(store_of(tracker).factory), name)
        lock = consumer_lock(tracker, name)
        checkpoint.migrate()
        lock.acquire(wait=wait)
        try:
            return _run_locked(
                tracker,
                consumer,
                checkpoint,
                lock,
                follow=follow,
                stop=stop,
                reset=reset,
                options={
                    "batch_size": batch_size,
                    "poll_interval": poll_interval,
                    "checkpoint_every": checkpoint_every,
                    "checkpoint_interval": checkpoint_interval,
                },
                on_start=on_start,
            )
        finally:
            lock.release()
    finally:
        consumer.close()


def _run_locked(
    tracker: PerformanceTracker,
    consumer: Consumer,
    checkpoint: ConsumerCheckpoint,
    lock: ProjectionLock,
    *,
    follow: bool,
    stop: threading.Event,
    reset: bool,
    options: dict[str, Any],
    on_start: Any,
) -> int:
    name = checkpoint.name
    if isinstance(consumer, TransactionalConsumer):
        with checkpoint.tables.transaction(commit=True) as c:
            checkpoint.tables.for_consumer(c)
            consumer.migrate(c, checkpoint.dialect)
    if reset:
        hook = getattr(consumer, "reset", None) if isinstance(consumer, TransactionalConsumer) else None
        checkpoint.reset(None if hook is None else lambda c: hook(c, checkpoint.dialect))
    state = checkpoint.state()
    if state.failed_position is not None:
        raise ConsumerFailedError(name, state.failed_position, state.last_error or "unknown error")
    if on_start is not None:
        on_start()
    agents = AgentIds(tracker)

    def start() -> ConsumerRunner:
        return ConsumerRunner(tracker, consumer, checkpoint, agents=agents, **options)

    if follow:
        return _follow(start, name, lock, stop)
    target = store_of(tracker).recorder.max_notification_id() or 0
    if checkpoint.position() >= target:
        return 0
    runner = start()
    with runner:
        while not runner.wait_until(target, timeout=0.2):
            if stop.is_set() or runner.progress.ended:
                break
    return runner.projection.handled


def _follow(start: Callable[[], ConsumerRunner], name: str, lock: ProjectionLock, stop: threading.Event) -> int:
    """Keep runners going (the views' `Follower`: back-off through outages) until `stop` is set; deliveries
    handled."""
    runners: list[ConsumerRunner] = []

    def started(runner: ConsumerRunner | None, _error: Exception | None) -> None:
        if runner is not None:
            runners.append(runner)

    follower: Follower[ConsumerRunner] = Follower(
        start, name=f"consumer {name}", log=log, before_restart=lock.keep, on_change=started
    )
    done = threading.Event()

    def stop_when_asked() -> None:
        while not done.is_set():
            if stop.wait(0.1):
                follower.stop()
                return

    watcher = threading.Thread(target=stop_when_asked, name=f"itertrack-consumer-{name}-stop", daemon=True)
    watcher.start()
    try:
        follower.run()
    finally:
        done.set()
        watcher.join()
    return sum(runner.projection.handled for runner in runners)


__all__ = [
    "AgentIds",
    "ConsumerFailedError",
    "ConsumerProjection",
    "ConsumerRunner",
    "checked_name",
    "consumer_lock",
    "run_consumer",
]
