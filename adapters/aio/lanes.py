"""Lanes: work run on a pool of threads, one at a time per key and in the order given, keys side by side.

The async tracker runs each iteration's calls in the iteration's lane, so its changes apply in the order the
host made them while other iterations' changes run (and share commits) on the other threads.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor

from itertrack.domain.model.errors import StoreError

log = logging.getLogger("itertrack")

Job = Callable[[], None]


class LanesClosedError(StoreError):
    """Raised by `Lanes.submit` once the lanes are closing: the tracker that owns them is closed."""


class Lanes:
    """Runs jobs on `workers` threads: jobs of one key one after another, in submission order; keys in parallel.

    A job reports its own outcome (it must not raise: anything it raises is logged and dropped). After each
    job, the lane's next one goes to the back of the pool's queue, so one busy key cannot hold a thread
    while other keys wait.
    """

    def __init__(self, workers: int, name: str = "itertrack-lane") -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._lanes: dict[Hashable, deque[Job]] = {}
        self._pending = 0
        self._closing = False

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet finished."""
        with self._lock:
            return self._pending

    def submit(self, key: Hashable, job: Job) -> None:
        """Queue `job` behind the jobs of `key` already queued; `LanesClosedError` once `close` began."""
        with self._lock:
            if self._closing:
                raise LanesClosedError("the tracker is closed")
            self._pending += 1
            lane = self._lanes.get(key)
            if lane is not None:
                lane.append(job)
                return
            self._lanes[key] = deque()
        self._pool.submit(self._run, key, job)

    def _run(self, key: Hashable, job: Job) -> None:
        try:
            job()
        except BaseException:  # a job reports its own outcome; this is a bug in one, never the lane's end
            log.exception("a tracker job failed outside its own error handling")
        with self._lock:
            self._pending -= 1
            if self._pending == 0:
                self._drained.notify_all()
            lane = self._lanes[key]
            if not lane:
                del self._lanes[key]
                return
            following = lane.popleft()
        self._pool.submit(self._run, key, following)

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new jobs, wait for every queued one to finish (up to `timeout` seconds), stop the threads.

        Returns whether every job finished. Blocks: call it off an event loop.
        """
        with self._lock:
            self._closing = True
            finished = self._drained.wait_for(lambda: self._pending == 0, timeout)
        if finished:
            self._pool.shutdown(wait=True)
        else:
            self._pool.shutdown(wait=False)
        return finished
