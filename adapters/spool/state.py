"""What the spooling writer and its forwarder share, and what one pass of forwarding did."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from uuid import UUID

from pydantic import BaseModel, ConfigDict

log = logging.getLogger("itertrack")


class SpoolFlush(BaseModel):
    """What one pass of forwarding the spool did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    forwarded_elsewhere: bool = False  # another process was forwarding this spool file: this pass sent nothing
    forwarded: int  # changes this pass sent to the store
    already_stored: int  # changes the store held already (a forward that committed before a crash)
    set_aside: int  # changes this pass set aside as stuck (the stored iteration refused them)
    stuck: int  # stuck changes in the spool now, waiting for a person
    waiting: int  # changes still waiting to be forwarded


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

    def went_down(self, reason: object) -> None:
        """The store did not answer: say so once per outage (each change kept meanwhile is logged at debug)."""
        if self.store_up:
            log.warning("store unavailable; keeping changes in the spool until it answers: %s", reason)
        self.store_up = False

    def came_back(self) -> None:
        """The store answered: say so once, if it was away."""
        if not self.store_up:
            log.warning("store answers again; forwarding the changes kept meanwhile")
        self.store_up = True


@dataclass
class FlushTally:
    """What one pass of forwarding has done so far, and which iterations it must not touch again."""

    forwarded: int = 0
    already: int = 0
    set_aside: int = 0
    later: set[UUID] = field(default_factory=set)  # lost every race (or is not stored yet): the next pass tries again
    last_notification: int = 0  # the highest notification id this pass appended
    answered: bool = False  # the store answered a forward (took it, or refused it for a reason of its own)

    def appended(self, notification_id: int | None) -> None:
        if notification_id:
            self.last_notification = max(self.last_notification, notification_id)
