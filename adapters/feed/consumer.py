"""The feed's consumer contract: what a named consumer of the event log implements, and what it is handed.

A consumer is a named follower of the whole event log. The runner (`itertrack.adapters.feed.runner`) delivers
every event of the log to it in log order, from the consumer's own durable checkpoint, one `Delivery` at a time.

- `Consumer` is at-least-once: `handle` may see an event again after a crash (the checkpoint moves after
  `handle` returns, in batches); make its effects idempotent with `delivery.key`.
- `TransactionalConsumer` is exactly-once in effect when it writes into the store's own database: `handle_in`
  runs inside the transaction that moves the consumer's checkpoint, on that transaction's cursor.

Handlers are called one at a time, on the runner's own thread (not the thread that called `run_consumer`).
A handler that raises stops its consumer at that event (state `failed`, error and position recorded); the
event is never skipped silently (`itertrack consumers retry NAME` / `itertrack consumers skip NAME`).

Discovery: `itertrack consume NAME` finds a consumer by name in the entry-point group `itertrack.consumers`.
Each entry point names a factory with the signature `ConsumerFactory`::

    def factory(tracker: PerformanceTracker, options: Mapping[str, str]) -> Consumer

`tracker` is the open tracker of the store the consumer follows (for reading it or building clients); `options`
are the `--option KEY=VALUE` pairs given on the command line (strings; empty when none). The factory raises
`itertrack.domain.model.errors.InvalidInputError` naming the option and value when one is wrong. A consumer class
whose constructor takes `(tracker, options)` is itself such a factory. The returned consumer's `name` must equal
the entry point's name. In pyproject.toml::

    [project.entry-points."itertrack.consumers"]
    log = "itertrack.adapters.feed.log_consumer:LogConsumer"
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias
from uuid import UUID

from itertrack.domain.model.iteration import Iteration
from itertrack.domain.service.tracker import PerformanceTracker

CONSUMER_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Delivery:
    """One event of the log, delivered to a consumer."""

    event: Iteration.Event  # the domain event (pydantic, frozen)
    position: int  # its notification id in the log (strictly increasing along the log)
    key: str  # stable idempotency key: f"{iteration_id}:{version}" (same on every redelivery)
    agent_id: str  # the agent of the event's iteration (every event has one)

    @property
    def iteration_id(self) -> UUID:
        """The id of the event's iteration."""
        return self.event.originator_id

    @property
    def version(self) -> int:
        """The event's version within its iteration (1 for `Started`)."""
        return self.event.originator_version

    @property
    def event_type(self) -> str:
        """The event's class name: "Started", "PhaseChanged", "MetricsRecorded", "RecordSaved", "LLMCallRecorded"."""
        return type(self.event).__name__


class Consumer(ABC):
    """At-least-once: `handle` may see an event again after a crash; use `delivery.key` to make effects idempotent."""

    name: ClassVar[str]  # matches CONSUMER_NAME
    event_types: ClassVar[tuple[str, ...]] = ()  # event_type names wanted; () = every event

    @abstractmethod
    def handle(self, delivery: Delivery) -> None:
        """Act on one event; raising stops this consumer at this event (state `failed`)."""

    def handle_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Act on consecutive events, in log order (the runner hands a plain consumer what its subscription has
        at hand, up to the batch size). Default: `handle` each. A consumer that can do better per batch (the
        relay publishes a page and waits for all acknowledgements at once) overrides it; when it raises anything
        but an outage, the runner hands the same events to `handle` one by one to find the one that fails."""
        for delivery in deliveries:
            self.handle(delivery)

    def close(self) -> None:  # noqa: B027 - an optional hook: the default releases nothing
        """Release what `handle` opened (connections); called once when the run ends. Default: nothing."""


class TransactionalConsumer(Consumer):
    """Exactly-once effect in the store's own database: `handle_in` runs inside the transaction that moves the
    consumer's checkpoint, on the same connection (`cursor` is the library datastore's cursor: SQLite or psycopg).
    `sql_dialect` tells which ("sqlite" | "postgresql")."""

    @abstractmethod
    def migrate(self, cursor: Any, sql_dialect: str) -> None:
        """Create its tables (idempotent); called once per run, before any delivery."""

    @abstractmethod
    def handle_in(self, delivery: Delivery, cursor: Any, sql_dialect: str) -> None:
        """Write the effect of one event on `cursor`; it commits with the checkpoint, or not at all."""

    def handle(self, delivery: Delivery) -> None:  # not used for transactional consumers
        """Not used: a transactional consumer is handed the transaction's cursor (`handle_in`)."""
        raise NotImplementedError


ConsumerFactory: TypeAlias = Callable[[PerformanceTracker, Mapping[str, str]], Consumer]
"""An entry point of the group `itertrack.consumers`: `(tracker, options) -> Consumer` (see the module docstring)."""
