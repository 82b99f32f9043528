"""The tracker for asyncio hosts: the same operations as coroutines, with no store I/O on the event loop.

Each call is queued in its iteration's lane (adapters/aio/dispatch.py): a change is decided on the loop in
short passes (pure Python) and written by one writer thread, with every other change decided meanwhile, in
one store transaction; what needs the store to be decided (an iteration not in this process's cache, reads,
the saving step) runs on a worker thread the way the sync tracker runs it. The coroutine waits on a future
that the outcome settles, so the loop keeps running while the store works.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Hashable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar
from uuid import UUID

from itertrack.adapters.aio.calls import Call, ChangeCall, RunCall, StartCall
from itertrack.adapters.aio.dispatch import Dispatcher
from itertrack.domain.model.change_keys import check_change_id
from itertrack.domain.model.changes import Change
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
    `tracker=` an open sync tracker to share (it is then left open, and its threads' changes share commits
    with this one's). It serves the event loop that opened it; a call from another loop raises `StoreError`.

    Work off the loop: one writer thread writes the changes decided on the loop, sharing transactions (group
    commit); `workers` threads (default 16) run what needs the store to be decided (loading an iteration this
    process has not cached, reads, the saving step, a change that lost a version race, every change while
    a spool holds changes), as well as connecting, retries and outages.

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
        self._dispatch: Dispatcher | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> Self:
        """Open the store (off the loop: connecting and migrating may take seconds) and start the threads."""
        if self._closed:
            raise StoreError("the tracker is closed")
        if self._dispatch is not None:
            return self
        if self._sync is None:
            self._sync = await asyncio.to_thread(PerformanceTracker, self._store_url, **self._options)
        self._dispatch = Dispatcher(self._sync, asyncio.get_running_loop(), self._workers)
        return self

    async def aclose(self) -> None:
        """Wait for every change in flight to finish (committed, spooled, or failed to its caller), then close
        the store (unless it was a tracker passed in). New calls raise `StoreError` from here on."""
        if self._closed:
            return
        self._closed = True
        dispatch, self._dispatch = self._dispatch, None
        if dispatch is not None:
            await dispatch.drained()
            await asyncio.to_thread(dispatch.close)
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
        sync = self.sync
        given = None if iteration_id is None else parse_iteration_id(iteration_id)
        if check_change_id(change_id) is not None:  # a keyed start may be a retry: the sync tracker's way
            lane: Hashable = object() if given is None else sync.lane_of(given)
            return await self._submit(
                RunCall(lane, lambda: sync.start_iteration(agent_id, iteration_number, given, change_id=change_id))
            )
        new_id = sync.clock.new_id() if given is None else given
        return await self._submit(StartCall(sync, agent_id, iteration_number, new_id))

    async def update_phase(
        self, iteration_id: UUID | str, phase: str, error: str | None = None, *, change_id: str | None = None
    ) -> None:
        """Record that the iteration entered `phase`; as `PerformanceTracker.update_phase`."""
        iid = parse_iteration_id(iteration_id)
        await self._submit(self._change_call(iid, self.sync.phase_change(iid, phase, error, change_id), change_id))

    async def update_metrics(
        self, iteration_id: UUID | str, metrics: Mapping[str, Amount], *, change_id: str | None = None
    ) -> None:
        """Add each amount to its metric's total; as `PerformanceTracker.update_metrics`."""
        iid = parse_iteration_id(iteration_id)
        await self._submit(self._change_call(iid, self.sync.metrics_change(iid, metrics, change_id), change_id))

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
        call = self.sync.llm_call_change(
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
        usage_read: LLMUsage | None = await self._submit(self._change_call(iid, call, change_id, value=call.usage))
        return usage_read

    async def save_iteration(
        self, record: IterationRecord | Mapping[str, Any], *, change_id: str | None = None
    ) -> UUID:
        """The saving step, under the iteration's id; as `PerformanceTracker.save_iteration`."""
        parsed = IterationRecord.parse(record)
        sync = self.sync
        lane: Hashable = object() if parsed.id is None else sync.lane_of(parsed.id)
        return await self._submit(RunCall(lane, lambda: sync.save_iteration(parsed, change_id=change_id)))

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
            try:
                # Both queued now, in order, whatever happens to this task while they are written.
                time_taken = sync.metrics_change(iid, {time_metric(phase): elapsed}, None)
                timed = self._submit(self._change_call(iid, time_taken, None))
                failed = self._submit(self._change_call(iid, sync.phase_change(iid, Phase.FAILED, error, None), None))
                await asyncio.shield(asyncio.gather(timed, failed))
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
        return await self._submit(RunCall(sync.lane_of(iid), lambda: sync.get_iteration(iid, version=version, at=at)))

    async def history(self, iteration_id: UUID | str) -> list[Iteration.Event]:
        """The iteration's events, oldest first, after this tracker's earlier calls naming it."""
        iid = parse_iteration_id(iteration_id)
        sync = self.sync
        return await self._submit(RunCall(sync.lane_of(iid), lambda: sync.history(iid)))

    async def get_record(self, iteration_id: UUID | str) -> IterationRecord | None:
        """The record the saving step stored under this id, if any."""
        iid = parse_iteration_id(iteration_id)
        sync = self.sync
        return await self._submit(RunCall(sync.lane_of(iid), lambda: sync.get_record(iid)))

    # -- internals ------------------------------------------------------------------------

    def _elapsed_ms(self, started: float) -> float:
        return round(max(0.0, self.sync.clock.monotonic() - started) * 1000.0, 3)

    def _change_call(self, iid: UUID, change: Change, key: str | None, value: _T | None = None) -> Call[_T | None]:
        """A change's call: decided on the loop when it can be, else applied on a worker thread."""
        return ChangeCall(self.sync, iid, change, key, value)

    def _submit(self, call: Call[_T]) -> asyncio.Future[_T]:
        """Queue `call` in its lane now; a future of the running loop that its outcome settles."""
        dispatch = self._dispatch
        if self._closed or dispatch is None:
            raise StoreError(
                "the tracker is closed" if self._closed else "the tracker is not open: use `async with` or `open()`"
            )
        if asyncio.get_running_loop() is not dispatch.loop:
            raise StoreError("the async tracker serves the event loop that opened it; open one per loop")
        return dispatch.submit(call)
