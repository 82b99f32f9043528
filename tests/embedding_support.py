"""Driving the embeddings consumer as the feed's runner will: real events of a real store, each handled in a
transaction of the store's own datastore (on PostgreSQL with the store's schema first on the search path)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, cast
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from fake_clock import FakeClock

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.feed.consumer import Delivery
from itertrack.adapters.feed.embeddings import EmbeddingConsumer
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.service.tracker import PerformanceTracker


def datastore_of(tracker: PerformanceTracker) -> SQLiteDatastore | PostgresDatastore:
    datastore = store_of(tracker).factory.datastore  # type: ignore[attr-defined]
    assert isinstance(datastore, SQLiteDatastore | PostgresDatastore)
    return datastore


def dialect_of(tracker: PerformanceTracker) -> str:
    return "postgresql" if isinstance(datastore_of(tracker), PostgresDatastore) else "sqlite"


@contextmanager
def transaction(tracker: PerformanceTracker, *, commit: bool = True) -> Iterator[Any]:
    """A transaction on the store's datastore, as the runner opens one for a consumer."""
    datastore = datastore_of(tracker)
    with datastore.transaction(commit=commit) as c:
        if isinstance(datastore, PostgresDatastore):
            c.execute(f'SET LOCAL search_path TO "{datastore.schema}", public')
        yield c


def deliveries(tracker: PerformanceTracker) -> list[Delivery]:
    """Every event of the store's log as a Delivery, in log order."""
    store = store_of(tracker)
    agents: dict[UUID, str] = {}
    found = []
    for notification in store.recorder.select_notifications(start=1, limit=100_000):
        event = cast(Iteration.Event, store.mapper.to_domain_event(notification))
        if isinstance(event, Iteration.Started):
            agents[event.originator_id] = event.agent_id
        key = f"{event.originator_id}:{event.originator_version}"
        found.append(Delivery(event=event, position=notification.id, key=key, agent_id=agents[event.originator_id]))
    return found


def consume(tracker: PerformanceTracker, consumer: EmbeddingConsumer) -> int:
    """Migrate, then hand every wanted delivery to `handle_in`, one transaction each; returns how many."""
    dialect = dialect_of(tracker)
    with transaction(tracker) as c:
        consumer.migrate(c, dialect)
    handled = 0
    for delivery in deliveries(tracker):
        if delivery.event_type in consumer.event_types:
            with transaction(tracker) as c:
                consumer.handle_in(delivery, c, dialect)
            handled += 1
    return handled


def rows(tracker: PerformanceTracker) -> list[dict[str, Any]]:
    with transaction(tracker, commit=False) as c:
        c.execute("SELECT * FROM iteration_embeddings ORDER BY iteration_number, agent_id")
        return [dict(r) for r in c.fetchall()]


class Spec(NamedTuple):
    """One iteration to run: each (phase, seconds) of `stays` entered in turn and stayed in; `tokens` as
    `<phase>_tokens` metrics; then `completed` (end "completed"), `failed` with `end` as the error, or still
    running (None)."""

    agent: str
    number: int
    stays: list[tuple[str, float]]
    tokens: dict[str, int]
    end: str | None


def run_iteration(tracker: PerformanceTracker, clock: FakeClock, spec: Spec) -> UUID:
    """Run `spec` through the tracker, time passing on `clock` (a FakeClock with step_ms=0)."""
    agent, number, stays, tokens, end = spec
    iid = tracker.start_iteration(agent, number)
    for phase, seconds in stays:
        tracker.update_phase(iid, phase)
        clock.advance(seconds * 1000)
    if tokens:
        tracker.update_metrics(iid, {f"{phase}_tokens": amount for phase, amount in tokens.items()})
    if end == "completed":
        tracker.update_phase(iid, "completed")
    elif end is not None:
        tracker.update_phase(iid, "failed", end)
    return iid
