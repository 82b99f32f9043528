"""The iteration-record side of every store's recorder: its tables, reading records back, housekeeping."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID


class IterationRecordStore(ABC):
    """The iteration-record side of a store's recorder: its tables, and reading records back.

    Writing happens inside the recorder's event insert (the `iteration_record` keyword of
    `save()`), so a record never exists without the event that marks it saved.
    """

    @abstractmethod
    def migrate(self) -> None:
        """Create the events and records tables if they do not exist."""

    @abstractmethod
    def select_iteration_record(self, iteration_id: UUID) -> dict[str, Any] | None:
        """The stored record's fields, or None."""

    @abstractmethod
    def select_record_ids(self) -> list[UUID]:
        """The ids of every stored record (for integrity checks)."""

    def closed_by_server(self, error: BaseException) -> bool:
        """Whether `error` says a pooled connection was closed by the server (a restart, a failover,
        `pg_terminate_backend`), so the same call may be tried once more on a fresh connection.

        Not for a store that cannot be reached (no retry: the caller's fallback applies at once).
        Stores without a pool never say so.
        """
        return False

    def drop_broken_connections(self) -> None:
        """After a failed call: discard pooled connections the store has closed (a restart), so the next call
        opens a fresh one instead of failing on each dead connection in turn. Stores without a pool do nothing.
        """
        return

    def in_serialised(self) -> bool:
        """Whether the calling thread is inside `serialised` (its insert must run in that block's transaction)."""
        return False

    @contextmanager
    def serialised(self, iteration_id: UUID) -> Iterator[None]:
        """Hold off other processes' retries on this iteration (used after a lost version race).

        Stores whose writers cannot starve each other need nothing here.
        """
        yield
