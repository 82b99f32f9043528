"""What the spooling writer and its forwarder share, and what one pass of forwarding did."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from itertrack.adapters.spool.port import SpooledChange


class SpoolFlush(BaseModel):
    """What one pass of forwarding the spool did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    forwarded: int
    already_stored: int
    stuck: int
    waiting: int


@dataclass
class SpoolState:
    """What the writer and the forwarder share, changed under `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # The spool holds changes (stuck ones too): each change then asks whether its iteration has some waiting.
    spooling: bool = False
    # The spool holds changes the forwarder can send (not stuck, not behind a stuck one).
    unforwarded: bool = False
    # Whether the store answered last time it was asked: while it does not, nothing waits on the network.
    store_up: bool = True


@dataclass
class FlushTally:
    """What one pass of forwarding has done so far, and which iterations it must not touch again."""

    forwarded: int = 0
    already: int = 0
    blocked: set[UUID] = field(default_factory=set)  # behind a stuck change: waits for a person
    later: set[UUID] = field(default_factory=set)  # lost every race this pass: the next pass tries again
    last_notification: int = 0  # the highest notification id this pass appended
    answered: bool = False  # the store answered a forward (took it, or refused it for a reason of its own)

    def appended(self, notification_id: int | None) -> None:
        if notification_id:
            self.last_notification = max(self.last_notification, notification_id)

    def count(self, change: SpooledChange, outcome: str) -> None:
        self.answered = True
        if outcome == "forwarded":
            self.forwarded += 1
        elif outcome == "already":
            self.already += 1
        elif outcome == "stuck":
            self.blocked.add(change.iteration_id)
        else:
            self.later.add(change.iteration_id)
