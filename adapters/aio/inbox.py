"""Outcomes of worker jobs handed to an event loop in batches: one wake-up of the loop per batch, not per job.

Each `call_soon_threadsafe` writes to the loop's self-pipe and schedules a callback; with hundreds of changes
in flight that is hundreds of wake-ups per second, each taking the GIL from the workers and delaying the
loop's own work. The inbox keeps outcomes in a list and schedules one drain while any wait.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

log = logging.getLogger("itertrack")

Outcome = tuple["asyncio.Future[Any]", object, BaseException | None, object]


class LoopInbox:
    """Settles futures of one loop from worker threads, in order of arrival, a batch per loop wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._waiting: list[Outcome] = []
        self._drain_scheduled = False

    def put(self, future: asyncio.Future[Any], result: object, error: BaseException | None, key: object) -> None:
        """Settle `future` with `result` (or `error`) on the loop, soon (from any thread). A failure nobody can be
        told of (the caller was cancelled, or the loop closed) is logged as a warning."""
        with self._lock:
            self._waiting.append((future, result, error, key))
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody can be told
            for _, _, lost, lost_key in self._take():
                if lost is not None:
                    log.warning("a change to %s finished after its event loop closed and failed: %r", lost_key, lost)

    def _take(self) -> list[Outcome]:
        with self._lock:
            taken, self._waiting = self._waiting, []
            self._drain_scheduled = False
        return taken

    def _drain(self) -> None:
        for future, result, error, key in self._take():
            if future.cancelled():
                if error is not None:
                    log.warning("a change to %s whose caller was cancelled failed: %r", key, error)
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
