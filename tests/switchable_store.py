"""A memory store that a test can switch off and on: the spool's scenarios without a network or a server."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, OperationalError
from eventsourcing.utils import Environment

from itertrack.adapters.spool.sqlite_file import SQLiteSpool
from itertrack.adapters.spool.writer import SpoolingWriter
from itertrack.adapters.store.event_store import EventSourcedStore
from itertrack.adapters.store.memory import MemoryRecorder, MemoryStoreFactory
from itertrack.domain import PerformanceTracker
from itertrack.domain.service.clock import Clock
from itertrack.domain.service.store_ports import RetryPause
from itertrack.domain.service.wiring import TrackerPorts


class SwitchableRecorder(MemoryRecorder):
    """The memory recorder, raising the library's `OperationalError` on every call while switched off, and while
    on, `refusing` (when set) on every insert and `refusing_records` on every read of a saved record: refusals
    that are not outages."""

    def __init__(self) -> None:
        super().__init__()
        self.up = True
        self.refusing: Exception | None = None
        self.refusing_records: Exception | None = None

    def _answer(self) -> None:
        if not self.up:
            raise OperationalError("store switched off by the test")

    def insert_events(self, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        self._answer()
        if self.refusing is not None:
            raise self.refusing
        return super().insert_events(stored_events, **kwargs)

    def select_events(self, *args: Any, **kwargs: Any) -> Any:
        self._answer()
        return super().select_events(*args, **kwargs)

    def select_iteration_record(self, iteration_id: Any) -> dict[str, Any] | None:
        self._answer()
        if self.refusing_records is not None:
            raise self.refusing_records
        return super().select_iteration_record(iteration_id)


class SwitchableStore(MemoryStoreFactory):
    """One switchable recorder shared by every tracker opened on this factory (as one database is)."""

    def __init__(self) -> None:
        super().__init__(Environment("PerformanceTracker", {}))
        self.recorder = SwitchableRecorder()

    def application_recorder(self) -> ApplicationRecorder:
        return self.recorder

    def close(self) -> None:
        """The shared recorder outlives each tracker."""


class NoPause(RetryPause):
    """Retries at once (the tests' races are deterministic)."""

    def pause(self, attempt: int) -> None:
        return


def spooling_tracker(
    store: SwitchableStore,
    spool: Path,
    clock: Clock,
    *,
    forward: bool = False,
    started_offline: bool = False,
    retry: RetryPause | None = None,
) -> PerformanceTracker:
    """A tracker on the switchable store writing through a spool file (forwarding by hand unless `forward`);
    `retry` is the tracker's pause between conflict retries (none by default)."""
    event_store = EventSourcedStore(store, {})
    writer = SpoolingWriter(
        event_store,
        SQLiteSpool(spool),
        started_offline=started_offline,
        forward=forward,
        clock=clock,
        retry=NoPause(),
        max_attempts=12,
    )
    return PerformanceTracker(
        clock=clock, ports=TrackerPorts(store=event_store, writer=writer, retry=retry or NoPause())
    )
