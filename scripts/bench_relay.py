"""`make bench` rows of the relay: events/s from a SQLite store into the local JetStream, beside nats-py alone.

Measured: pages of the log read from the store, turned into deliveries and handed to `RelayConsumer.handle_batch`
(every message acknowledged by JetStream before the next page). Floor: nats-py publishing the same messages with
the same headers to a stream of its own, acknowledgements awaited per page, no tracker. A second row shows what
one `handle` per event (one round trip each) reaches.

Run alone: .venv/bin/python -m scripts.bench_relay [--events N] [--nats URL]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import nats

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.feed.consumer import Delivery
from itertrack.adapters.feed.relay import RelayConsumer, RelaySettings
from itertrack.adapters.feed.schema import encode_message, headers_of, subject_of
from itertrack.domain import PerformanceTracker
from itertrack.domain.model.iteration import Iteration
from scripts.bench_support import Row, seed_events

PAGE = 500
TARGET = 5_000.0


def pages_of(tracker: PerformanceTracker, agents: dict[UUID, str]) -> Any:
    """The log as pages of deliveries, read from the store as a runner reads it."""
    store = store_of(tracker)
    start = 1
    while True:
        notifications = store.recorder.select_notifications(start=start, limit=PAGE)
        if not notifications:
            return
        page = []
        for n in notifications:
            event = store.mapper.to_domain_event(n)
            assert isinstance(event, Iteration.Event)
            if isinstance(event, Iteration.Started):
                agents[event.originator_id] = event.agent_id
            key = f"{event.originator_id}:{event.originator_version}"
            page.append(Delivery(event=event, position=n.id, key=key, agent_id=agents[event.originator_id]))
        yield page
        start = notifications[-1].id + 1


def settings_for(url: str) -> RelaySettings:
    tag = uuid.uuid4().hex[:10]
    return RelaySettings(url=url, stream=f"BENCH_{tag.upper()}", subject_prefix=f"bench-{tag}.events")


async def _floor(url: str, deliveries: list[Delivery]) -> float:
    """Seconds nats-py takes to publish the relay's messages of `deliveries`, acks awaited per page."""
    settings = settings_for(url)
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=settings.stream, subjects=[settings.subjects])
    messages = [
        (subject_of(d.agent_id, d.event_type, settings.subject_prefix), encode_message(d), headers_of(d))
        for d in deliveries
    ]
    try:
        started = time.perf_counter()
        for first in range(0, len(messages), PAGE):
            futures = [
                await js.publish_async(subject, body, headers=headers)
                for subject, body, headers in messages[first : first + PAGE]
            ]
            await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await js.delete_stream(settings.stream)
        await nc.close()


async def _delete(url: str, stream: str) -> None:
    nc = await nats.connect(url)
    await nc.jetstream().delete_stream(stream)
    await nc.close()


def _relay(url: str, tracker: PerformanceTracker, one_by_one: bool, limit: int) -> tuple[int, float]:
    """(events, seconds) relaying the log's first `limit` events (whole pages) from the store to a fresh stream."""
    relay = RelayConsumer(settings_for(url))
    try:
        relay.sync()  # connects and creates the stream: not part of the figure
        count = 0
        started = time.perf_counter()
        for page in pages_of(tracker, {}):
            if one_by_one:
                for delivery in page:
                    relay.handle(delivery)
            else:
                relay.handle_batch(page)
            count += len(page)
            if count >= limit:
                break
        elapsed = time.perf_counter() - started
        assert relay.published == count, (relay.published, count)
        return count, elapsed
    finally:
        relay.close()
        asyncio.run(_delete(url, relay.settings.stream))


def relay_rows(folder: Path, url: str, quick: bool) -> list[Row]:
    """The relay's rows: batched (the target) and one event at a time, both against the nats-py floor."""
    events = 3_000 if quick else 60_000
    with PerformanceTracker(store=f"sqlite:///{folder / 'relay.db'}", migrate=True) as tracker:
        written = seed_events(tracker, events)
        deliveries = [d for page in pages_of(tracker, {}) for d in page]
        floor = len(deliveries) / asyncio.run(_floor(url, deliveries))
        count, seconds = _relay(url, tracker, one_by_one=False, limit=written)
        batched = count / seconds
        count1, seconds1 = _relay(url, tracker, one_by_one=True, limit=min(written, 15_000))
        single = count1 / seconds1
    return [
        Row(
            path=f"relay of {count:,} events from a SQLite file to the local JetStream, pages of {PAGE}",
            measured=f"{batched:,.0f} events/s",
            floor=f"{floor:,.0f} events/s (nats-py publishing the same messages, acks per page, no tracker)",
            ratio=round(batched / floor, 2),
            target=f">= {TARGET:,.0f}/s",
            met=batched >= TARGET,
        ),
        Row(
            path=f"relay of {count1:,} events, one handle() per event (each acknowledged before the next)",
            measured=f"{single:,.0f} events/s",
            floor=f"{floor:,.0f} events/s (as above)",
            ratio=round(single / floor, 2),
            target="- (what a runner without batches gets)",
            met=None,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for row in relay_rows(Path(tmp), args.nats, args.quick):
            print(f"{row.path}\n    {row.measured}  |  floor: {row.floor}  |  target {row.target}: {row.met}")


if __name__ == "__main__":
    main()
