"""One projection runner per store at a time: an advisory lock on PostgreSQL, a file lock beside SQLite."""

from __future__ import annotations

import fcntl
import os
import time
import zlib
from contextlib import AbstractContextManager
from typing import Any

from eventsourcing.persistence import InfrastructureFactory

from itertrack.adapters.library_hooks import sqlite_pool
from itertrack.adapters.store.postgres import PostgresStoreFactory
from itertrack.adapters.store.sqlite import SQLiteStoreFactory
from itertrack.domain.model.errors import StoreError


class ProjectionBusyError(StoreError):
    """Raised when another projection runner already holds this store's read models."""


class ProjectionLock:
    """Held for a runner's lifetime; released by `release()` or when the process dies."""

    def __init__(self, factory: InfrastructureFactory[Any]) -> None:
        self.factory = factory
        self._file: int | None = None
        self._conn_cm: AbstractContextManager[Any] | None = None
        self._conn: Any = None
        self._key = 0
        if isinstance(factory, PostgresStoreFactory):
            self._key = zlib.crc32(f"itertrack-read-models:{factory.datastore.schema}".encode())

    def acquire(self, *, wait: bool = False, timeout: float = 3600.0) -> None:
        """Take the lock, waiting up to `timeout` seconds when `wait`, else raise `ProjectionBusyError` at once."""
        deadline = time.monotonic() + timeout
        while not self._try():
            if not wait or time.monotonic() >= deadline:
                raise ProjectionBusyError(
                    "another `itertrack project` is already keeping this store's read models; "
                    "stop it first, or pass --wait to take over when it stops"
                )
            time.sleep(0.2)

    def _try(self) -> bool:
        if isinstance(self.factory, SQLiteStoreFactory):
            db_name = sqlite_pool(self.factory.datastore).db_name
            if "mode=memory" in db_name or ":memory:" in db_name:
                return True
            if self._file is None:
                self._file = os.open(f"{db_name}.projection-lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
        if isinstance(self.factory, PostgresStoreFactory):
            if self._conn is None:
                self._conn_cm = self.factory.datastore.get_connection()
                self._conn = self._conn_cm.__enter__()
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (self._key,)).fetchone()
            return bool(row["ok"])
        return True

    def release(self) -> None:
        """Give the lock back."""
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            os.close(self._file)
            self._file = None
        if self._conn is not None and self._conn_cm is not None:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            finally:
                self._conn_cm.__exit__(None, None, None)
                self._conn = self._conn_cm = None
