"""The async tracker's machinery: calls ordered per lane on the event loop, decided there in short passes, and
written by one thread in shared transactions.

A call names a lane (its iteration's lock stripe, `PerformanceTracker.lane_of`): the calls of a lane run one
at a time, in the order they were made; lanes run side by side. A change is decided on the loop
(`PerformanceTracker.decide_change`: pure Python, no store I/O, no lock wait) in passes of about half a
millisecond, so the host's timers keep their time. The events of every change decided in a pass go to the
writer thread, which writes all that wait in one store transaction (shared with the sync tracker's threads:
group commit), settles each change (`PerformanceTracker.settle`) and hands the outcomes back to the loop in
one wake-up (`LoopInbox`). A call that cannot be decided without waiting (an iteration not cached here, a
keyed retry, a contended iteration, a spool in use, a read, a change that lost a version race) runs on a
worker thread, the way the sync tracker runs it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from itertrack.adapters.aio.budget import PassBudget
from itertrack.adapters.aio.calls import Call
from itertrack.adapters.aio.inbox import LoopInbox
from itertrack.domain.service.decided import DecidedChange
from itertrack.domain.service.tracker import PerformanceTracker

log = logging.getLogger("itertrack")

_T = TypeVar("_T")

# How long one pass of the loop may spend deciding changes before it lets timers and I/O run (seconds); and how
# long the host's own calls may spend deciding theirs at once, in one pass, before the rest wait for a decide pass
# (enough for a lone change or two, so that one needs no second pass).
DECIDE_BUDGET_S = 0.0004
INLINE_BUDGET_S = 0.00015
# At most this many changes in one batch of the writer thread (the store's group commit bounds it too).
MAX_BATCH = 256
# The writer thread lets go of the GIL after settling this many changes of a batch. Settling holds it (pure
# Python, ~5 us a change), and an event loop woken for a due timer meanwhile waits for it: a batch of 180
# settled at once kept the loop's timers waiting up to about a millisecond. Measured on 200 concurrent
# iterations (5 interleaved runs each): heartbeat lag p99 1.45 -> 1.12 ms on SQLite and 1.81 -> 1.38 ms on
# PostgreSQL, throughput within the runs' spread (-4% and -2% at the median); every 16 changes cut p99 about
# as much but throughput by 11-13%.
SETTLE_YIELD_EVERY = 32


Outcome = tuple[Call[Any], Any, BaseException | None]


class Dispatcher:
    """Runs calls for one event loop: see the module's docstring. `submit` and `drained` are called on the loop."""

    def __init__(self, tracker: PerformanceTracker, loop: asyncio.AbstractEventLoop, workers: int) -> None:
        self.tracker = tracker
        self.loop = loop
        self._inbox: LoopInbox[Outcome] = LoopInbox(loop, self._finish, _log_lost)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="itertrack-async")
        # A lane with a call running: the calls waiting behind it (None until a second call arrives: most lanes
        # never hold two, and a deque per change would be one more object per change for the cyclic GC).
        self._lanes: dict[Hashable, deque[Call[Any]] | None] = {}
        self._to_decide: deque[Call[Any]] = deque()
        self._decide_scheduled = False
        self._inline = PassBudget(INLINE_BUDGET_S, loop.call_soon)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._writes: queue.SimpleQueue[tuple[Call[Any], DecidedChange] | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_batches, name="itertrack-async-writer", daemon=True)
        self._writer.start()

    # -- on the loop ----------------------------------------------------------------------

    def submit(self, call: Call[_T]) -> asyncio.Future[_T]:
        """Queue `call` behind the calls of its lane; a future of the loop that its outcome settles."""
        future: asyncio.Future[_T] = self.loop.create_future()
        call.future = future
        self._in_flight += 1
        self._idle.clear()
        lanes = self._lanes
        if call.lane not in lanes:
            lanes[call.lane] = None
            self._start(call)
        else:
            waiting = lanes[call.lane]
            if waiting is None:
                lanes[call.lane] = deque((call,))
            else:
                waiting.append(call)
        return future

    async def drained(self) -> None:
        """Wait until every call submitted has its outcome."""
        await self._idle.wait()

    def _start(self, call: Call[Any]) -> None:
        """The call's turn in its lane: decided now while this pass of the loop has time left for it (a lone
        change waits for no other pass), else in the next decide pass."""
        if not call.decidable:
            self._pool.submit(self._run_slow, call)
            return
        if not self._decide_scheduled and self._inline.allows():
            decided = self._decide(call)
            if decided is not None:
                self._writes.put(decided)
            return
        self._to_decide.append(call)
        if not self._decide_scheduled:
            self._decide_scheduled = True
            self.loop.call_soon(self._decide_pass)

    def _decide(self, call: Call[Any]) -> tuple[Call[Any], DecidedChange] | None:
        """Decide one change on the loop: its events for the writer thread, or None when it was settled here (a
        refused change) or sent to a worker thread (it cannot be decided without waiting)."""
        try:
            change = call.decide()
        except Exception as e:  # refused (bad value, finished iteration, ...): nothing written
            self._finish((call, None, e))
            return None
        if change is None:
            self._pool.submit(self._run_slow, call)
            return None
        return (call, change)

    def _decide_pass(self) -> None:
        """Decide queued changes for up to `DECIDE_BUDGET_S`; hand the decided ones to the writer thread."""
        deadline = time.perf_counter() + DECIDE_BUDGET_S
        decided: list[tuple[Call[Any], DecidedChange]] = []
        to_decide = self._to_decide
        while to_decide:
            one = self._decide(to_decide.popleft())
            if one is not None:
                decided.append(one)
            if time.perf_counter() >= deadline:
                break
        for item in decided:
            self._writes.put(item)
        if to_decide:
            self.loop.call_soon(self._decide_pass)
        else:
            self._decide_scheduled = False

    def _finish(self, outcome: Outcome) -> None:
        """Settle a call's future with its outcome and give its lane's next call its turn."""
        call, result, error = outcome
        future = call.future
        assert future is not None
        if future.cancelled():
            if error is not None:
                log.warning("a change in lane %s whose caller was cancelled failed: %r", call.lane, error)
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
        waiting = self._lanes[call.lane]
        if waiting:
            self._start(waiting.popleft())
        else:
            del self._lanes[call.lane]
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    # -- off the loop ---------------------------------------------------------------------

    def _run_slow(self, call: Call[Any]) -> None:
        """A worker thread: run the call the sync tracker's way; hand its outcome to the loop."""
        try:
            outcome: Outcome = (call, call.slow(), None)
        except BaseException as e:  # delivered to the caller: its await raises it
            outcome = (call, None, e)
        self._inbox.put((outcome,))

    def _write_batches(self) -> None:
        """The writer thread: every decided change waiting, in one `append_many`; then each settled, in order."""
        while True:
            batch, stop = self._next_batch()
            if batch:
                self._inbox.put(self._write(batch))
            if stop:
                return

    def _next_batch(self) -> tuple[list[tuple[Call[Any], DecidedChange]], bool]:
        """Wait for a decided change, then take every one waiting (up to `MAX_BATCH`); and whether to stop after."""
        first = self._writes.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                item = self._writes.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _write(self, batch: list[tuple[Call[Any], DecidedChange]]) -> list[Outcome]:
        """Write a batch in shared transactions and settle each change: the outcomes for the loop (a change
        that lost a version race goes to a worker thread instead, which reports it)."""
        try:
            outcomes = self.tracker.ports.writer.append_many([change.as_append() for _, change in batch])
        except Exception as e:  # a writer bug: every change of the batch fails with it (and is settled)
            outcomes = [e] * len(batch)
        settled: list[Outcome] = []
        for n, ((call, change), written) in enumerate(zip(batch, outcomes, strict=True), 1):
            if n % SETTLE_YIELD_EVERY == 0:
                time.sleep(0)  # releases the GIL: the loop's due timers run (see SETTLE_YIELD_EVERY)
            try:
                done = self.tracker.settle(change, written)
            except Exception as e:
                settled.append((call, None, e))
                continue
            if done:
                settled.append((call, call.value, None))
            else:  # another writer took its version: re-load and re-apply it on a worker thread
                self._pool.submit(self._run_slow, call)
        return settled

    def close(self) -> None:
        """Stop the writer thread and the workers once the calls in flight finished (blocks: off the loop)."""
        self._writes.put(None)
        self._writer.join()
        self._pool.shutdown(wait=True)


def _log_lost(outcomes: list[Outcome]) -> None:
    for call, _, error in outcomes:
        if error is not None:
            log.warning("a change in lane %s finished after its event loop closed and failed: %r", call.lane, error)
