"""Helpers of the relay's tests: deliveries read from a real store, a test stream, counting by a durable consumer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, NotFoundError
from support import wait_for

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.feed.consumer import Delivery
from itertrack.adapters.feed.relay import RelaySettings
from itertrack.adapters.feed.schema import MSG_ID_HEADER, encode_message, headers_of, subject_of
from itertrack.domain import PerformanceTracker
from itertrack.domain.model.iteration import Iteration

T = TypeVar("T")

NATS_URL = os.environ.get("ITERTRACK_TEST_NATS", "nats://127.0.0.1:4222")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to its end on a fresh loop (the tests' side of NATS)."""
    return asyncio.run(coroutine)


def deliveries_of(tracker: PerformanceTracker, start: int = 1) -> list[Delivery]:
    """Every event of the store from position `start`, as the feed delivers them (agent of each iteration)."""
    store = store_of(tracker)
    agents: dict[uuid.UUID, str] = {}
    out: list[Delivery] = []
    for n in store.recorder.select_notifications(start=1, limit=10**9):
        event = store.mapper.to_domain_event(n)
        assert isinstance(event, Iteration.Event)
        if isinstance(event, Iteration.Started):
            agents[event.originator_id] = event.agent_id
        if n.id >= start:
            key = f"{event.originator_id}:{event.originator_version}"
            out.append(Delivery(event=event, position=n.id, key=key, agent_id=agents[event.originator_id]))
    return out


def write_iterations(tracker: PerformanceTracker, agents: list[str], each: int = 1) -> None:
    """`each` iterations per agent, with a phase, metrics and an LLM call each: several event types."""
    for agent in agents:
        for number in range(each):
            iid = tracker.start_iteration(agent_id=agent, iteration_number=number)
            tracker.update_phase(iid, "backtest_execution")
            tracker.update_metrics(iid, {"backtest_execution_time_ms": 1520 + number})
            tracker.record_llm_call(iid, "analysis", model="claude-haiku-4-5", usage={"input_tokens": 10})
            tracker.update_phase(iid, "completed")


def nats_reachable(url: str) -> str | None:
    """None when a NATS server answers at `url`, else why not."""

    async def probe() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
        await nc.jetstream().account_info()
        await nc.close()

    try:
        run(probe())
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def require_nats() -> str:
    """The test NATS's URL; unreachable fails under CI and skips locally (like the PostgreSQL fixture)."""
    problem = nats_reachable(NATS_URL)
    if problem is not None:
        message = f"NATS JetStream at {NATS_URL} is unreachable: {problem}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return NATS_URL


def relay_settings(url: str, **kwargs: Any) -> RelaySettings:
    """Relay settings on a fresh stream and subject prefix of one test (streams must not share subjects)."""
    tag = uuid.uuid4().hex[:12]
    kwargs.setdefault("stream", f"ITT_{tag.upper()}")
    return RelaySettings(url=url, subject_prefix=f"itt-{tag}.events", **kwargs)


async def _delete_stream(url: str, name: str) -> None:

    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
    with contextlib.suppress(NotFoundError):
        await nc.jetstream().delete_stream(name)
    await nc.close()


def delete_stream(url: str, name: str) -> None:
    run(_delete_stream(url, name))


async def _drain(url: str, settings: RelaySettings, durable: str, expected: int, timeout: float) -> list[Any]:
    """Every message a durable pull consumer of `stream` receives (acked), until `expected` or `timeout`."""

    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
    js = nc.jetstream()
    sub = await js.pull_subscribe(settings.subjects, durable=durable, stream=settings.stream)
    got: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            batch = await sub.fetch(500, timeout=0.2)
        except (TimeoutError, NatsTimeout):
            if len(got) >= expected:
                break
            continue
        for msg in batch:
            got.append(msg)
            await msg.ack()
    # One more short fetch: anything beyond `expected` (a duplicate) shows up too.
    with contextlib.suppress(TimeoutError, NatsTimeout):
        got.extend(await sub.fetch(500, timeout=0.3))
    await nc.close()
    return got


def drain(settings: RelaySettings, durable: str, expected: int, timeout: float = 10.0) -> list[Any]:
    """`_drain` from a synchronous test."""
    return run(_drain(settings.url, settings, durable, expected, timeout))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateNats:
    """A nats-server of the test's own, with JetStream in a temporary folder, that the test stops and starts."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            message = "nats-server is not installed"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: nats_reachable(self.url) is None, 15, f"private nats-server on port {self.port}", 0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@contextmanager
def private_nats(folder: Path) -> Iterator[PrivateNats]:
    server = PrivateNats(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _publish_raw(settings: RelaySettings, delivery: Delivery, relay_headers: bool) -> Any:
    nc = await nats.connect(settings.url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
    headers = headers_of(delivery) if relay_headers else {MSG_ID_HEADER: f"other:{delivery.key}"}
    try:
        return await nc.jetstream().publish(
            subject_of(delivery.agent_id, delivery.event_type, settings.subject_prefix),
            encode_message(delivery),
            headers=headers,
        )
    finally:
        await nc.close()


def publish_raw(settings: RelaySettings, delivery: Delivery, relay_headers: bool = True) -> Any:
    """Publish the relay's message of `delivery` with nats-py directly (its PubAck); without the relay's
    headers, a message of another publisher."""
    return run(_publish_raw(settings, delivery, relay_headers))


async def _window_open(settings: RelaySettings, delivery: Delivery) -> bool:

    nc = await nats.connect(settings.url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
    # An expected last sequence no stream has: the server checks the message id first, so it answers
    # "duplicate" while it remembers the id, and refuses the message (storing nothing) once it forgot it.
    headers = {**headers_of(delivery), "Nats-Expected-Last-Sequence": str(2**62)}
    subject = subject_of(delivery.agent_id, delivery.event_type, settings.subject_prefix)
    try:
        ack = await nc.jetstream().publish(subject, encode_message(delivery), headers=headers)
    except APIError as e:
        if e.err_code == 10071:  # wrong last sequence
            return True
        raise
    finally:
        await nc.close()
    assert ack.duplicate, ack
    return False


def window_open(settings: RelaySettings, delivery: Delivery) -> bool:
    """Whether the stream has forgotten `delivery`'s message id (its duplicate window passed), checked without
    storing anything."""
    return run(_window_open(settings, delivery))


async def _create_stream(settings: RelaySettings, **config: Any) -> None:
    nc = await nats.connect(settings.url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
    try:
        await nc.jetstream().add_stream(name=settings.stream, subjects=[settings.subjects], **config)
    finally:
        await nc.close()


def create_stream(settings: RelaySettings, **config: Any) -> None:
    """Create the relay's stream beforehand, with these settings of JetStream's StreamConfig."""
    run(_create_stream(settings, **config))
