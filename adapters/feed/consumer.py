"""The feed's consumer contract (issue 15), a verbatim stand-in from CONSUMER_API.md until the feed branch merges."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID

from itertrack.domain.model.iteration import Iteration

CONSUMER_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Delivery:
    """One event of the log, delivered to a consumer."""

    event: Iteration.Event  # the domain event (pydantic, frozen)
    position: int  # its notification id in the log (strictly increasing along the log)
    key: str  # stable idempotency key: f"{iteration_id}:{version}" (same on every redelivery)
    agent_id: str  # the agent of the event's iteration (every event has one)

    # convenience:
    @property
    def iteration_id(self) -> UUID:
        return self.event.originator_id

    @property
    def version(self) -> int:
        return self.event.originator_version

    @property
    def event_type(self) -> str:
        return type(self.event).__name__  # "Started", "PhaseChanged", "MetricsRecorded", "RecordSaved", ...


class Consumer(ABC):
    """At-least-once: `handle` may see an event again after a crash; use `delivery.key` to make effects idempotent."""

    name: ClassVar[str]  # matches CONSUMER_NAME
    event_types: ClassVar[tuple[str, ...]] = ()  # event_type names wanted; () = every event

    @abstractmethod
    def handle(self, delivery: Delivery) -> None: ...

    def close(self) -> None:  # noqa: B027  # release what handle opened (connections); default no-op
        ...


class TransactionalConsumer(Consumer):
    """Exactly-once effect in the store's own database: `handle_in` runs inside the transaction that moves the
    consumer's checkpoint, on the same connection (`cursor` is the library datastore's cursor: SQLite or psycopg).
    `sql_dialect` tells which ("sqlite" | "postgresql")."""

    @abstractmethod
    def migrate(self, cursor: Any, sql_dialect: str) -> None: ...  # create its tables (idempotent), once per run

    @abstractmethod
    def handle_in(self, delivery: Delivery, cursor: Any, sql_dialect: str) -> None: ...

    def handle(self, delivery: Delivery) -> None:  # not used for transactional consumers
        raise NotImplementedError
