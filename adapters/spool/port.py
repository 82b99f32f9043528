"""The spool port: where changes wait, durably and in order, while the store cannot be reached."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from pydantic import BaseModel, ConfigDict

from itertrack.domain.model.changes import DeferredChange
from itertrack.domain.model.errors import StoreUnavailableError
from itertrack.domain.model.records import IterationRecord


class SpoolUnusableError(StoreUnavailableError):
    """The spool file cannot be used now (full or read-only file system, damaged, moved aside): a failure of
    the spool, which says nothing about whether the store answers."""


@dataclass(frozen=True)
class SpooledChange:
    """One tracker save that is waiting: its stored events (and the record of a saving step).

    `command` is the change that made the events, kept beside them so the forwarder can apply it again
    on the stored iteration when another writer took their versions meanwhile (None for the start of
    an iteration, and for changes spooled by releases that did not keep it). A change to an iteration
    whose version was unknown waits as `deferred`: the change itself, no events yet.
    """

    id: int
    iteration_id: UUID
    events: tuple[StoredEvent, ...]
    record: IterationRecord | None
    stuck: str | None
    deferred: DeferredChange | None = None
    command: DeferredChange | None = None
    # The id of the event the change was made on (the host's copy's last); None if unknown or a start.
    base: UUID | None = None

    @property
    def intent(self) -> DeferredChange | None:
        """The change to apply on the stored iteration when the events cannot go as they are."""
        return self.deferred if self.deferred is not None else self.command


class SpoolEntry(BaseModel):
    """What `spool status` shows of one waiting change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    iteration_id: UUID
    versions: tuple[int, ...]
    # For a change kept before its version was known: what it will do ("phase analysis", ...).
    deferred: str | None = None
    with_record: bool
    stuck: str | None


class SpoolStatus(BaseModel):
    """Everything waiting in the spool; `stuck` entries could not be forwarded and need a person."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    waiting: int
    stuck: int
    entries: tuple[SpoolEntry, ...]


class Spool(ABC):
    """A durable, ordered queue of changes the store did not take."""

    @abstractmethod
    def add(
        self,
        iteration_id: UUID,
        events: Sequence[StoredEvent],
        record: IterationRecord | None,
        command: DeferredChange | None = None,
        base: UUID | None = None,
    ) -> None:
        """Keep one save's events, the change that made them and the id of the event it was made on
        (durably, before returning)."""

    @abstractmethod
    def add_deferred(self, iteration_id: UUID, deferred: DeferredChange, record: IterationRecord | None) -> None:
        """Keep one change whose events cannot be made yet (the iteration's version is unknown)."""

    @abstractmethod
    def counts(self, iteration_id: UUID) -> tuple[int, int]:
        """How many changes of this iteration wait to be forwarded (stuck ones aside), and how many of them
        are deferred changes."""

    @abstractmethod
    def waiting(self, limit: int, after: int = 0, *, movable: bool = False) -> list[SpooledChange]:
        """The oldest changes with an id above `after`, in the order they were added: stuck ones included,
        unless `movable` (only those the forwarder may send)."""

    @abstractmethod
    def remove(self, *change_ids: int) -> None:
        """Forget changes the store now holds (in one durable step)."""

    @abstractmethod
    def mark_stuck(self, change_id: int, reason: str) -> None:
        """Set aside a change the stored iteration refuses, with the reason, for a person to resolve; the
        iteration's other changes go on without it."""

    @abstractmethod
    def unstick(self, change_id: int) -> bool:
        """Let the forwarder try a stuck change again (after a person fixed its cause); False if not stuck."""

    @abstractmethod
    def count(self, iteration_id: UUID | None = None) -> int:
        """How many changes wait to be forwarded (for one iteration, or in all); stuck ones are not counted."""

    @abstractmethod
    def stuck_count(self) -> int:
        """How many changes are set aside as stuck, waiting for a person (`spool retry` or `spool discard`)."""

    @abstractmethod
    def status(self) -> SpoolStatus:
        """What is waiting, for `itertrack spool status`."""

    @abstractmethod
    def forwarding(self) -> AbstractContextManager[bool]:
        """Hold the right to forward this spool (without waiting): True while held, False when another
        forwarder (of this process or another sharing the file) holds it."""

    @abstractmethod
    def reclaim(self) -> None:
        """Give back the disk space forwarded changes left free (never raises; call when nothing movable waits)."""

    @abstractmethod
    def close(self) -> None:
        """Release the spool's file."""
