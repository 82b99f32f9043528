"""One runner per store (read models) or per consumer name at a time: a file lock beside SQLite (filelock), an
advisory lock on PostgreSQL.

Each store factory says which lock its read models take (`projection_lock()`) and which a named consumer of the
feed takes (`consumer_lock(name)`); nothing here asks what kind of store it is.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from filelock import FileLock, Timeout

from itertrack.adapters.private_files import PRIVATE_MODE
from itertrack.domain.model.errors import StoreError


class ProjectionBusyError(StoreError):
    """Raised when another projection runner already holds this store's read models."""


BUSY_READ_MODELS = (
    "another `itertrack project` is already keeping this store's read models; "
    "stop it first, or pass --wait to take over when it stops"
)


def consumer_busy(name: str) -> str:
    """What a second runner of the consumer `name` is told."""
    return (
        f"another runner of consumer {name!r} is already running on this store; "
        "stop it first, or pass --wait to take over when it stops"
    )


class ProjectionLock(ABC):
    """Held for a runner's lifetime; released by `release()` or when the process dies.

    `busy` is the message of the `ProjectionBusyError` raised when another runner holds it."""

    busy: str = BUSY_READ_MODELS

    def acquire(self, *, wait: bool = False, timeout: float = 3600.0) -> None:
        """Take the lock, waiting up to `timeout` seconds when `wait`, else raise `ProjectionBusyError` at once."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if not wait or time.monotonic() >= deadline:
                raise ProjectionBusyError(self.busy)
            time.sleep(0.2)

    @abstractmethod
    def try_acquire(self) -> bool:
        """Take the lock if it is free; whether it was."""

    @abstractmethod
    def release(self) -> None:
        """Give the lock back (nothing if not held)."""

    def keep(self) -> None:
        """Make sure the lock is still held, taking it again if it went with its connection (after an outage).

        Raises `ProjectionBusyError` if another runner took it meanwhile, or the store's error if it cannot
        be asked. A file lock is never lost while the process lives: nothing to do.
        """
        return


class NoProjectionLock(ProjectionLock):
    """A store no other process can see (memory, an in-memory SQLite database): nothing to exclude."""

    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        return


class FileProjectionLock(ProjectionLock):
    """An exclusive lock on a file beside the SQLite database; the kernel drops it when the process dies."""

    def __init__(self, path: str, *, busy: str = BUSY_READ_MODELS) -> None:
        self._lock = FileLock(path, mode=PRIVATE_MODE)
        self.busy = busy

    def try_acquire(self) -> bool:
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)


class AdvisoryProjectionLock(ProjectionLock):
    """A session advisory lock keyed by the schema (and `purpose`), held on a connection of its own."""

    def __init__(
        self, datastore: PostgresDatastore, *, purpose: str = "itertrack-read-models", busy: str = BUSY_READ_MODELS
    ) -> None:
        self._datastore = datastore
        # The read models' key is "itertrack-read-models:<schema>"; a consumer's names the consumer as well.
        self._key = zlib.crc32(f"{purpose}:{datastore.schema}".encode())
        self.busy = busy
        self._conn_cm: AbstractContextManager[Any] | None = None
        self._conn: Any = None

    def try_acquire(self) -> bool:
        if self._conn is None:
            self._conn_cm = self._datastore.get_connection()
            self._conn = self._conn_cm.__enter__()
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (self._key,)).fetchone()
        return bool(row["ok"])

    def keep(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
            except psycopg.Error:
                self._drop()  # the session ended (terminated, or the network cut): its lock went with it
            else:
                return  # the session lives, and holds the lock
        if not self.try_acquire():
            raise ProjectionBusyError(f"{self.busy} (it was taken while the connection holding the lock was lost)")

    def release(self) -> None:
        if self._conn is not None and self._conn_cm is not None:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            except psycopg.Error:
                pass  # the session is gone, and its lock with it
            finally:
                self._drop()

    def _drop(self) -> None:
        """Hand the lock's connection back to the pool (which discards a broken one)."""
        conn_cm, self._conn, self._conn_cm = self._conn_cm, None, None
        if conn_cm is not None:
            with contextlib.suppress(Exception):
                conn_cm.__exit__(None, None, None)
