"""The relay against a real NATS JetStream: schema, subjects, duplicates, restarts, and NATS going away.

Needs the NATS named by ITERTRACK_TEST_NATS (default nats://127.0.0.1:4222, started by `make test`): skips
locally without it, fails under CI. The outage test runs a nats-server of its own on another port.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError as FutureCancelledError
from pathlib import Path
from typing import Any

import pytest
from relay_support import (
    NATS_URL,
    create_stream,
    delete_stream,
    deliveries_of,
    drain,
    private_nats,
    publish_raw,
    relay_settings,
    require_nats,
    window_open,
    write_iterations,
)
from support import wait_for

from itertrack.adapters.feed.consumer import Delivery
from itertrack.adapters.feed.relay import (
    RelayConsumer,
    RelayMessageError,
    RelaySettings,
    RelayStreamError,
    RelayUnavailableError,
)
from itertrack.adapters.feed.schema import SCHEMA, agent_of_subject, message_of, parse_message
from itertrack.domain import PerformanceTracker
from itertrack.domain.model.errors import StoreUnavailableError

AGENTS = ["trader.7", "a b", "*", ">", "é日本", "_5F"]


@pytest.fixture
def nats_url() -> str:
    return require_nats()


@pytest.fixture
def deliveries(open_tracker: Callable[..., PerformanceTracker], sqlite_store: str) -> list[Delivery]:
    """Events of a real SQLite store written by a real tracker: 5 per iteration, 2 iterations per agent."""
    tracker = open_tracker(sqlite_store)
    write_iterations(tracker, AGENTS, each=2)
    return deliveries_of(tracker)


@pytest.fixture
def relays() -> Iterator[Callable[[RelaySettings], RelayConsumer]]:
    """Opens relays and closes them (and deletes their streams) at the end of the test."""
    opened: list[RelayConsumer] = []

    def factory(settings: RelaySettings) -> RelayConsumer:
        relay = RelayConsumer(settings)
        opened.append(relay)
        return relay

    yield factory
    for relay in opened:
        relay.close()
    # Streams on the shared server; a private server's go with its folder.
    for stream in {r.settings.stream for r in opened if r.settings.url == NATS_URL}:
        delete_stream(NATS_URL, stream)


def keys_of(messages: list[Any]) -> list[str]:
    return [m.headers["Nats-Msg-Id"] for m in messages]


def test_each_message_follows_the_schema_on_its_subject(
    nats_url: str, deliveries: list[Delivery], relays: Callable[[RelaySettings], RelayConsumer]
) -> None:
    """Every event arrives once, in log order, as `itertrack.event/1` JSON on <prefix>.<agent token>.<type>,
    with its key as Nats-Msg-Id."""
    settings = relay_settings(nats_url)
    relay = relays(settings)
    for delivery in deliveries:
        relay.handle(delivery)
    messages = drain(settings, "reader", len(deliveries))
    assert keys_of(messages) == [d.key for d in deliveries]
    for message, delivery in zip(messages, deliveries, strict=True):
        parsed = parse_message(message.data)
        assert parsed.schema_ == SCHEMA
        assert parsed.type == type(delivery.event).__name__
        assert (parsed.iteration_id, parsed.version, parsed.position) == (
            delivery.iteration_id,
            delivery.version,
            delivery.position,
        )
        assert parsed.timestamp == delivery.event.timestamp
        assert message_of(delivery)["timestamp"].endswith("Z")
        assert parsed.agent_id == delivery.agent_id
        dumped = delivery.event.model_dump(mode="json")
        assert parsed.payload == {name: dumped[name] for name in type(delivery.event).content_fields}
        assert message.subject.endswith(f".{parsed.type}")
        assert agent_of_subject(message.subject, settings.subject_prefix) == delivery.agent_id
    assert {m.subject.split(".")[-1] for m in messages} == {
        "Started",
        "PhaseChanged",
        "MetricsRecorded",
        "LLMCallRecorded",
    }


def test_the_same_delivery_twice_within_the_window_is_stored_once(
    nats_url: str, deliveries: list[Delivery], relays: Callable[[RelaySettings], RelayConsumer]
) -> None:
    """A repeat by the relay, and a repeat of its exact message by anyone (the server's Nats-Msg-Id check)."""
    settings = relay_settings(nats_url)
    relay = relays(settings)
    first, second = deliveries[0], deliveries[1]
    relay.handle(first)
    relay.handle(first)
    relay.handle_batch([first, second])
    assert publish_raw(settings, first).duplicate  # the server itself drops it
    assert relay.published == 2
    assert keys_of(drain(settings, "reader", 2)) == [first.key, second.key]


def test_a_relay_restarted_beyond_the_duplicate_window_publishes_each_event_once(
    nats_url: str, deliveries: list[Delivery], relays: Callable[[RelaySettings], RelayConsumer]
) -> None:
    """The second relay is handed everything again (a runner on an old checkpoint, or reset) after the server
    forgot the first relay's message ids: a durable consumer still counts each event exactly once."""
    settings = relay_settings(nats_url, duplicate_window_s=1.0)
    half = len(deliveries) // 2
    first = relays(settings)
    first.handle_batch(deliveries[:half])
    first.close()
    # The server no longer drops a repeat of the last message published: the window has passed for all of them.
    wait_for(lambda: window_open(settings, deliveries[half - 1]), 15, "the duplicate window to pass")
    second = relays(settings)
    for delivery in deliveries:
        second.handle(delivery)
    assert (second.skipped, second.published) == (half, len(deliveries) - half)
    messages = drain(settings, "counter", len(deliveries))
    assert Counter(keys_of(messages)) == Counter(d.key for d in deliveries)
    assert keys_of(messages) == [d.key for d in deliveries]


def test_nats_stopped_and_restarted_under_the_relay_loses_and_doubles_nothing(
    tmp_path: Path, deliveries: list[Delivery], relays: Callable[[RelaySettings], RelayConsumer]
) -> None:
    """kill -9 of the server while the relay publishes one event at a time: handle blocks and retries with
    back-off until the server is back, and every event is in the stream exactly once."""
    with private_nats(tmp_path / "js") as server:
        settings = relay_settings(server.url, ack_timeout_s=1.0, connect_timeout_s=0.5)
        relay = relays(settings)
        handled: list[str] = []
        failure: list[BaseException] = []

        def publish_all() -> None:
            try:
                for delivery in deliveries:
                    relay.handle(delivery)
                    handled.append(delivery.key)
            except BaseException as e:
                failure.append(e)

        worker = threading.Thread(target=publish_all)
        worker.start()
        wait_for(lambda: len(handled) >= 5, 20, "the relay to publish some events")
        server.stop()
        wait_for(lambda: relay.retries >= 2, 20, "the relay to retry against the stopped server")
        stalled = len(handled)
        assert stalled < len(deliveries)
        server.start()
        worker.join(60)
        assert not worker.is_alive()
        assert failure == []
        assert handled == [d.key for d in deliveries]
        messages = drain(settings, "counter", len(deliveries))
        assert keys_of(messages) == [d.key for d in deliveries]


def test_without_nats_past_its_patience_handle_raises_a_store_unavailable_error(
    tmp_path: Path, deliveries: list[Delivery], relays: Callable[[RelaySettings], RelayConsumer]
) -> None:
    """The typed error a runner retries on; the event was not published and is published by the retry."""
    with private_nats(tmp_path / "js") as server:
        settings = relay_settings(server.url, ack_timeout_s=0.5, connect_timeout_s=0.3, patience_s=1.0)
        relay = relays(settings)
        relay.handle(deliveries[0])
        server.stop()
        with pytest.raises(RelayUnavailableError, match="did not acknowledge") as raised:
            relay.handle(deliveries[1])
        assert isinstance(raised.value, StoreUnavailableError)
        server.start()
        relay.handle(deliveries[1])
        assert keys_of(drain(settings, "counter", 2)) == [deliveries[0].key, deliveries[1].key]


def test_a_stream_someone_else_writes_to_stops_the_relay(
    nats_url: str, deliveries: list[Delivery], relays: Callable[[RelaySettings], RelayConsumer]
) -> None:
    """A message without the relay's position header last in the stream: refused, named, nothing published."""
    settings = relay_settings(nats_url, patience_s=0.0)
    relay = relays(settings)
    relay.handle(deliveries[0])
    publish_raw(settings, deliveries[1], relay_headers=False)
    restarted = relays(settings)
    with pytest.raises(RelayStreamError, match="not published by a relay"):
        restarted.handle(deliveries[2])


def test_a_stream_on_other_subjects_is_refused(
    nats_url: str, deliveries: list[Delivery], relays: Callable[[RelaySettings], RelayConsumer]
) -> None:
    settings = relay_settings(nats_url)
    relays(relay_settings(nats_url, stream=settings.stream)).sync()  # same stream name, another prefix
    with pytest.raises(RelayStreamError, match="takes subjects"):
        relays(settings).handle(deliveries[0])


def test_a_refused_message_stops_the_batch_there_so_the_stream_stays_a_prefix_of_the_log(
    nats_url: str,
    open_tracker: Callable[..., PerformanceTracker],
    sqlite_store: str,
    relays: Callable[[RelaySettings], RelayConsumer],
) -> None:
    """One message the stream refuses (too large) in the middle of a pipelined batch: the later ones, already
    sent, are refused too, so no restart can skip past the missing one; the error names the event."""
    tracker = open_tracker(sqlite_store)
    write_iterations(tracker, ["a"], each=1)
    big = tracker.start_iteration(agent_id="b", iteration_number=1)
    tracker.update_phase(big, "failed", error="x" * 3000)
    write_iterations(tracker, ["c"], each=1)
    deliveries = deliveries_of(tracker)
    settings = relay_settings(nats_url, patience_s=0.0)
    create_stream(settings, max_msg_size=2048)
    relay = relays(settings)
    with pytest.raises(RelayMessageError, match=f"{big}:2"):
        relay.handle_batch(deliveries)
    before = [d.key for d in deliveries[:6]]  # iteration "a" (5 events) and the big one's Started
    assert keys_of(drain(settings, "counter", len(before))) == before
    assert relays(settings).sync() == deliveries[5].position


def test_closing_a_relay_whose_client_cancels_its_own_close_does_not_raise(
    nats_url: str, deliveries: list[Delivery], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in CI after a NATS server was stopped under the relay: the client cancelled its own close, and the
    relay's close raised `CancelledError` out of a test's teardown. Closing is cleanup: it logs and finishes."""
    relay = RelayConsumer(relay_settings(nats_url))
    relay.handle(deliveries[0])
    real_run = relay._run  # noqa: SLF001  # the relay's bridge to its loop thread

    def cancelled_close(coroutine: Any, timeout: float) -> Any:
        if getattr(coroutine, "__qualname__", "").endswith("Client.close"):
            coroutine.close()
            raise FutureCancelledError
        return real_run(coroutine, timeout)

    monkeypatch.setattr(relay, "_run", cancelled_close)
    try:
        relay.close()
    finally:
        delete_stream(nats_url, relay.settings.stream)
