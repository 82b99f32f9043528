"""The tracker for asyncio hosts: the same operations as coroutines, with no store I/O on the event loop.

Each call is handed to the iteration's lane (adapters/aio/lanes.py): a pool of worker threads runs the
sync `PerformanceTracker`'s call there, one at a time per iteration, in the order the calls were made, while
other iterations' calls run beside it (and share commits, where the store's writer groups them). The
coroutine waits on a future the worker settles, so the loop keeps running while the store works.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar
from uuid import UUID

from itertrack.adapters.aio.inbox import LoopInbox
from itertrack.adapters.aio.lanes import Lanes
from itertrack.domain.model.errors import InvalidInputError, StoreError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.llm_calls import DEFAULT_PROVIDER
from itertrack.domain.model.metrics import Amount, time_metric
from itertrack.domain.model.phases import TERMINAL_PHASES, Phase
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.model.state import IterationState
from itertrack.domain.model.text import parse_iteration_id
from itertrack.domain.model.usage import LLMUsage
from itertrack.domain.service.interruptions import failure_message
from itertrack.domain.service.tracker import PerformanceTracker

log = logging.getLogger("itertrack")

_T = TypeVar("_T")

DEFAULT_WORKERS = 16


class AsyncPerformanceTracker:
    """`PerformanceTracker` for asyncio: every operation is a coroutine, and the event loop never waits on the store.

    Open it with `async with AsyncPerformanceTracker(store=...) as tracker:` (or `await tracker.open()` and
    `await tracker.aclose()`); the arguments are `PerformanceTracker`'s (store URL, phases, clock, ...), or
    `tracker=` an open sync tracker to share (it is then left open). `workers` threads (default 16) run the
    calls; store I/O, connecting and retries happen on them.

    Ordering: calls naming one iteration apply in the order they were made (when each coroutine started:
    the order of `await`s, or of `asyncio.create_task` calls), also when the host does not await one before
    making the next. Reads (`get_iteration`, `history`) of an iteration wait for its earlier calls.

    Durability: an awaited call returns once its change is committed (or kept in the outage spool, as
    with the sync tracker); the errors are the sync tracker's, raised by the `await`.

    Fire and forget: any change may be started as a task (`asyncio.create_task(tracker.update_metrics(...))`)
    and not awaited; keep a reference to the task (the loop holds tasks weakly). Its failure is then only in
    the task (asyncio logs "Task exception was never retrieved" if nobody looks) and in this tracker's log.
    A caller cancelled while its change is queued or running does not withdraw it: the change still applies
    in order, and a failure of it is logged as a warning. `aclose()` waits for every change in flight.
    """

    def __init__(
        self,
        store: str | None = None,
        *,
        tracker: PerformanceTracker | None = None,
        workers: int = DEFAULT_WORKERS,
        **tracker_options: Any,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 1024:
            raise InvalidInputError("workers", workers, "must be an int from 1 to 1024")
        if tracker is not None and (store is not None or tracker_options):
            raise InvalidInputError("tracker", tracker, "is already open: pass either it or store options")
        self._store_url = store
        self._options = tracker_options
        self._sync: PerformanceTracker | None = tracker
        self._owns_sync = tracker is None
        self._workers = workers
        self._lanes: Lanes | None = None
        # One inbox per event loop the tracker is called from (usually one): outcomes reach it in batches.
        self._inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopInbox] = weakref.WeakKeyDictionary()
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> Self:
        """Open the store (off the loop: connecting and migrating may take seconds) and start the workers."""
        if self._closed:
            raise StoreError("the tracker is closed")
        if self._lanes is not None:
            return self
        if self._sync is None:
            self._sync = await asyncio.to_thread(PerformanceTracker, self._store_url, **self._options)
        self._lanes = Lanes(self._workers, name="itertrack-async")
        return self

    async def aclose(self) -> None:
        """Wait for every change in flight to finish (committed, spooled, or failed to its caller), then close
        the store (unless it was a tracker passed in). New calls raise `StoreError` from here on."""
        if self._closed:
            return
        self._closed = True
        lanes, self._lanes = self._lanes, None
        if lanes is not None:
            await asyncio.to_thread(lanes.close)
        if self._sync is not None and self._owns_sync:
            await asyncio.to_thread(self._sync.close)

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def sync(self) -> PerformanceTracker:
        """The sync tracker doing the work (for read models, the CLI's helpers, tests); `StoreError` before open."""
        if self._sync is None:
            raise StoreError("the tracker is not open: use `async with AsyncPerformanceTracker(...)` or `open()`")
        return self._sync

    # -- commands -------------------------------------------------------------------------

    async def start_iteration(
        self,
        agent_id: str,
        iteration_number: int,
        iteration_id: UUID | str | None = None,
        *,
        change_id: str | None = None,
    ) -> UUID:
        """Begin tracking an iteration; as `PerformanceTracker.start_iteration`."""
        key: Hashable = object() if iteration_id is None else parse_iteration_id(iteration_id)
        sync = self.sync
        return await self._run(
            key, lambda: sync.start_iteration(agent_id, iteration_number, iteration_id, change_id=change_id)
        )

    async def update_phase(
        self, iteration_id: UUID | str, phase: str, error: str | None = None, *, change_id: str | None = None
    ) -> None:
        """Record that the iteration entered `phase`; as `PerformanceTracker.update_phase`."""
        iid = parse_iteration_id(iteration_id)
        sync = self.sync
        await self._run(iid, lambda: sync.update_phase(iid, phase, error, change_id=change_id))

    async def update_metrics(
        self, iteration_id: UUID | str, metrics: Mapping[str, Amount], *, change_id: str | None = None
    ) -> None:
        """Add each amount to its metric's total; as `PerformanceTracker.update_metrics`."""
        iid = parse_iteration_id(iteration_id)
        taken = dict(metrics) if isinstance(metrics, Mapping) else metrics  # the host may reuse its dict
        sync = self.sync
        await self._run(iid, lambda: sync.update_metrics(iid, taken, change_id=change_id))

    async def record_usage(
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
        """Record one LLM call's usage in `phase`; as `PerformanceTracker.record_usage` (None: usage unknown)."""
        return await self.record_llm_call(
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

    async def record_llm_call(
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
        """Record one LLM call made in `phase`; as `PerformanceTracker.record_llm_call` (None: usage unknown)."""
        iid = parse_iteration_id(iteration_id)
        sync = self.sync
        return await self._run(
            iid,
            lambda: sync.record_llm_call(
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
            ),
        )

    async def save_iteration(
        self, record: IterationRecord | Mapping[str, Any], *, change_id: str | None = None
    ) -> UUID:
        """The saving step, under the iteration's id; as `PerformanceTracker.save_iteration`."""
        parsed = IterationRecord.parse(record)
        key: Hashable = object() if parsed.id is None else parsed.id
        sync = self.sync
        return await self._run(key, lambda: sync.save_iteration(parsed, change_id=change_id))

    @asynccontextmanager
    async def track_phase(self, iteration_id: UUID | str, phase: str) -> AsyncIterator[None]:
        """Enter `phase`, time the block, add `<phase>_time_ms` (ms); a block that does not finish fails the iteration.

        Any exception out of the block, task cancellation included (`task.cancel()`, `asyncio.timeout`,
        `asyncio.wait_for`), records the phase's time and marks the iteration `failed` (a cancellation as
        `"cancelled: CancelledError"`; see `failure_message`), then is re-raised unchanged. Recording it is
        shielded from a second cancellation (it still lands, in order); a failure to record is logged, never
        raised over the host's own exception. Raises `InvalidInputError` up front for a terminal or unknown
        phase or a bad id, and the errors of `update_phase` on entering the phase.
        """
        iid = parse_iteration_id(iteration_id)
        sync = self.sync
        if sync.catalog.check(phase) in TERMINAL_PHASES:
            raise InvalidInputError("phase", phase, "cannot be timed: it is terminal (use update_phase)")
        await self.update_phase(iid, phase)
        started = sync.clock.monotonic()
        try:
            yield
        except BaseException as exc:
            elapsed = self._elapsed_ms(started)
            error = failure_message(exc, cancelled=isinstance(exc, asyncio.CancelledError))

            def mark_failed() -> None:
                sync.update_metrics(iid, {time_metric(phase): elapsed})
                sync.update_phase(iid, Phase.FAILED, error=error)

            marking = self._submit(iid, mark_failed)
            try:
                await asyncio.shield(marking)
            except Exception:
                log.warning("could not mark iteration %s failed after %r in %s", iid, exc, phase, exc_info=True)
            raise
        await self.update_metrics(iid, {time_metric(phase): self._elapsed_ms(started)})

    # -- queries --------------------------------------------------------------------------

    async def get_iteration(
        self, iteration_id: UUID | str, *, version: int | None = None, at: datetime | None = None
    ) -> IterationState:
        """The iteration's state now, as of a version, or as of an instant, after this tracker's earlier calls
        naming it; as `PerformanceTracker.get_iteration`."""
        iid = parse_iteration_id(iteration_id)
        sync = self.sync
        return await self._run(iid, lambda: sync.get_iteration(iid, version=version, at=at))

    async def history(self, iteration_id: UUID | str) -> list[Iteration.Event]:
        """The iteration's events, oldest first, after this tracker's earlier calls naming it."""
        iid = parse_iteration_id(iteration_id)
        sync = self.sync
        return await self._run(iid, lambda: sync.history(iid))

    async def get_record(self, iteration_id: UUID | str) -> IterationRecord | None:
        """The record the saving step stored under this id, if any."""
        iid = parse_iteration_id(iteration_id)
        sync = self.sync
        return await self._run(iid, lambda: sync.get_record(iid))

    # -- internals ------------------------------------------------------------------------

    def _elapsed_ms(self, started: float) -> float:
        return round(max(0.0, self.sync.clock.monotonic() - started) * 1000.0, 3)

    async def _run(self, key: Hashable, call: Callable[[], _T]) -> _T:
        return await self._submit(key, call)

    def _submit(self, key: Hashable, call: Callable[[], _T]) -> asyncio.Future[_T]:
        """Queue `call` in `key`'s lane now; a future of the running loop that its outcome settles."""
        if self._closed or self._lanes is None:
            raise StoreError(
                "the tracker is closed" if self._closed else "the tracker is not open: use `async with` or `open()`"
            )
        loop = asyncio.get_running_loop()
        inbox = self._inboxes.get(loop)
        if inbox is None:
            inbox = self._inboxes[loop] = LoopInbox(loop)
        future: asyncio.Future[_T] = loop.create_future()

        def job() -> None:
            try:
                result = call()
            except BaseException as e:  # delivered to the caller: the loop's task raises it
                inbox.put(future, None, e, key)
            else:
                inbox.put(future, result, None, key)

        self._lanes.submit(key, job)
        return future
