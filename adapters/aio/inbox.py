"""Outcomes handed from worker threads to an event loop in batches: one wake-up of the loop per batch, and a bounded
number handled per pass of the loop.

Each `call_soon_threadsafe` writes to the loop's self-pipe and schedules a callback; with hundreds of changes
in flight that is hundreds of wake-ups per second, each taking the GIL from the workers. The inbox keeps
outcomes in a list and schedules one drain while any wait. A drain handles at most `per_pass` of them and
leaves the rest to the loop's next pass: each outcome resumes a task, and a pass that resumed hundreds at
once would hold the loop (and every timer of the host) for milliseconds.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

_T = TypeVar("_T")

DEFAULT_PER_PASS = 8


class LoopInbox(Generic[_T]):
    """Hands items from any thread to `handle(item)` on `loop`, in order of arrival, `per_pass` per loop pass.

    `lost(items)` is called (in the putting thread) with items that arrive after the loop closed.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        handle: Callable[[_T], None],
        lost: Callable[[list[_T]], None],
        per_pass: int = DEFAULT_PER_PASS,
    ) -> None:
        self.loop = loop
        self._handle = handle
        self._lost = lost
        self._per_pass = max(1, per_pass)
        self._lock = threading.Lock()
        self._waiting: deque[_T] = deque()
        self._drain_scheduled = False

    def put(self, items: Iterable[_T]) -> None:
        """Hand `items` to the loop (from any thread); the loop handles them soon, in order."""
        with self._lock:
            self._waiting.extend(items)
            if self._drain_scheduled or not self._waiting:
                return
            self._drain_scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody can be told
            with self._lock:
                taken = list(self._waiting)
                self._waiting.clear()
                self._drain_scheduled = False
            self._lost(taken)

    def _drain(self) -> None:
        with self._lock:
            n = min(self._per_pass, len(self._waiting))
            taken = [self._waiting.popleft() for _ in range(n)]
            more = bool(self._waiting)
            self._drain_scheduled = more
        for item in taken:
            self._handle(item)
        if more:
            self.loop.call_soon(self._drain)
