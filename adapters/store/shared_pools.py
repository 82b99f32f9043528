"""Connection pools shared by the trackers of one process: one per store and connection settings, counted.

Trackers opened in one process on the same PostgreSQL store with the same connection settings (the
`POSTGRES_*` keys the store URL and `ITERTRACK_*` settings resolve to) use one datastore, so one pool
of at most `pool_size + max_overflow` connections, instead of a pool each (32 trackers held 96
server connections). Each user holds a `Lease`; the pool closes when the last lease is released.
Releasing a lease twice changes nothing. A pool made before the process forked is never handed to
the child (its connections belong to the parent): the child makes its own, and never closes the
parent's (closing would end the parent's sessions on the server).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

_T = TypeVar("_T")


@dataclass
class _Entry(Generic[_T]):
    resource: _T
    close: Callable[[_T], None]
    pid: int
    users: int = 0


@dataclass
class Lease(Generic[_T]):
    """One user's hold on a shared resource; `release()` is idempotent."""

    resource: _T
    _pools: SharedPools[_T] = field(repr=False)
    _entry: _Entry[_T] = field(repr=False)
    _released: bool = field(default=False, repr=False)

    @property
    def released(self) -> bool:
        """Whether this lease was released."""
        return self._released

    def release(self) -> None:
        """Give the resource back; the last lease of this process closes it. A second call does nothing."""
        self._pools.release(self)


class SharedPools(Generic[_T]):
    """A thread-safe, fork-aware registry of reference-counted resources (connection pools) by key."""

    def __init__(self) -> None:
        # Re-entrant: opening a pool allocates, the garbage collector may then finalise an abandoned store
        # (eventsourcing's `Application.__del__` closes it) and release its lease on this very thread, inside
        # `acquire`. With a plain lock that release waited for ever on the lock its own thread held.
        self._lock = threading.RLock()
        self._entries: dict[Hashable, _Entry[_T]] = {}
        # Pools inherited from the parent process: kept referenced, so the garbage collector never closes
        # them here (closing would terminate the parent's sessions on the server).
        self._inherited: list[_Entry[_T]] = []
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # A thread of the parent may have held the lock at the fork: the child starts with a fresh one.
        self._lock = threading.RLock()
        self._inherited.extend(self._entries.values())
        self._entries = {}

    def acquire(self, key: Hashable, open_new: Callable[[], _T], close: Callable[[_T], None]) -> Lease[_T]:
        """A lease on the resource of `key`, made by `open_new()` (under the registry's lock, so once) when
        this process has none; `close(resource)` runs when the last lease is released.

        Raises whatever `open_new` raises (nothing is registered then).
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.pid != os.getpid():
                if entry is not None:
                    self._inherited.append(entry)
                entry = _Entry(open_new(), close, os.getpid())
                self._entries[key] = entry
            entry.users += 1
            return Lease(entry.resource, self, entry)

    def release(self, lease: Lease[_T]) -> None:
        """Release `lease` (see `Lease.release`)."""
        entry = lease._entry  # noqa: SLF001  # the lease's own registry
        with self._lock:
            if lease._released:  # noqa: SLF001
                return
            lease._released = True  # noqa: SLF001
            entry.users -= 1
            if entry.users > 0 or entry.pid != os.getpid():
                return
            for key, registered in list(self._entries.items()):
                if registered is entry:
                    del self._entries[key]
        entry.close(entry.resource)

    def users(self, key: Hashable) -> int:
        """How many leases of this process hold the resource of `key` (0: none open)."""
        with self._lock:
            entry = self._entries.get(key)
            return 0 if entry is None or entry.pid != os.getpid() else entry.users
