"""The relay: a named consumer (`relay`) that publishes each event of the log to a NATS JetStream stream.

Each delivery becomes one message (schema `itertrack.event/1`, see `schema.py`) on the subject
`itertrack.events.<agent token>.<type>` of the stream (default `ITERTRACK`, created when missing with subjects
`itertrack.events.>` and a configurable duplicate window), with `Nats-Msg-Id` set to the delivery's key.

Guarantees, and how:

* At-least-once into the stream: `handle` (and `handle_batch`) return only after JetStream acknowledged every
  message, so the runner's checkpoint never moves past an event the stream does not hold.
* No repeat within the duplicate window: the server drops a message whose `Nats-Msg-Id` it saw in the window.
* No repeat beyond it (a relay restarted after an hour): the stream is kept a gap-free prefix of the log, in log
  order. Every message carries `Nats-Expected-Last-Sequence` (the stream's last sequence the relay knows, plus one
  per message already sent in the batch), so the server refuses a message unless every earlier one is stored:
  one refused or lost message makes every later one of its batch refused too. Each message also carries its log
  position (`Itertrack-Position`). When it starts, and after any failure, the relay reads the stream's last
  message (`STREAM.MSG.GET` last by subject `itertrack.events.>`): deliveries at or below its position are
  already in the stream and are skipped. A runner replaying from an older checkpoint, or rebuilt from zero,
  therefore publishes nothing twice. Consequence: the stream belongs to one relay of one store; a message
  published into it by anyone else stops the relay with `RelayStreamError`.

NATS away (stopped, restarting, unreachable): `handle` retries with capped, jittered back-off, reconnecting,
for `patience` seconds (None: until it succeeds or the consumer is closed), then raises `RelayUnavailableError`
(a `StoreUnavailableError`), so a runner retries the same event later. Nothing is skipped either way.

nats-py is asyncio: the consumer runs an event loop in a daemon thread of its own; `handle`, called from the
runner's thread, submits a coroutine to it and waits on its future.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import CancelledError as FutureCancelledError
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from itertrack.adapters.feed.consumer import Consumer, Delivery
from itertrack.adapters.feed.schema import (
    POSITION_HEADER,
    SUBJECT_PREFIX,
    check_subject_prefix,
    encode_message,
    headers_of,
    subject_of,
)
from itertrack.domain.model.errors import InvalidInputError, StoreConfigError, StoreError, StoreUnavailableError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

log = logging.getLogger("itertrack.relay")

T = TypeVar("T")

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_STREAM = "ITERTRACK"
DEFAULT_DUPLICATE_WINDOW_S = 120.0  # JetStream's own default
EXPECTED_LAST_SEQUENCE_HEADER = "Nats-Expected-Last-Sequence"
EXPECTED_STREAM_HEADER = "Nats-Expected-Stream"
MESSAGE_TOO_LARGE = 10054  # JetStream's error code: larger than the stream's max_msg_size
# Messages in flight at once within a batch (nats-py's own cap on pending async publishes is 4,000).
PIPELINE = 1_000
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0


class RelayUnavailableError(StoreUnavailableError):
    """Raised when NATS did not acknowledge the messages within the relay's patience; nothing was skipped:
    retry the same deliveries (they are published at most once more, never lost)."""


class RelayStreamError(StoreError):
    """Raised when the stream cannot be the relay's: its subjects do not take `itertrack.events.>`, or its last
    message was not published by a relay (no `Itertrack-Position` header). Waiting does not fix it."""


class RelayMessageError(InvalidInputError):
    """Raised when NATS refuses one message for what it is (larger than the server's max payload or the stream's
    max message size): retrying cannot help; the runner stops at that event for an operator to decide."""


class _Retry(Exception):  # noqa: N818  # internal signal, never escapes the module
    """A failure that waiting and re-reading the stream can fix."""


@dataclass(frozen=True)
class RelaySettings:
    """Where and how the relay publishes.

    `url`: the NATS server(s), comma-separated; `stream`: the JetStream stream's name; `subject_prefix`: the
    subjects' first tokens (`<prefix>.<agent token>.<type>`; streams on one server must not share subjects, so a
    second store relayed to the same server takes a prefix of its own); `duplicate_window_s`: the
    window of a stream the relay creates (an existing stream keeps its own); `ack_timeout_s`: how long one batch
    waits for its acknowledgements; `patience_s`: how long `handle` keeps retrying before it raises (None: until
    closed); `connect_timeout_s`: one connection attempt.
    """

    url: str = DEFAULT_NATS_URL
    stream: str = DEFAULT_STREAM
    subject_prefix: str = SUBJECT_PREFIX
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S
    ack_timeout_s: float = 5.0
    patience_s: float | None = None
    connect_timeout_s: float = 2.0

    @property
    def subjects(self) -> str:
        """The stream's subjects: `<prefix>.>`."""
        return f"{self.subject_prefix}.>"

    def __post_init__(self) -> None:
        if not self.stream or any(c in self.stream for c in " .*>\t\r\n/\\"):
            raise InvalidInputError("stream", self.stream, "must be a JetStream stream name (no spaces, . * > / \\)")
        check_subject_prefix(self.subject_prefix)
        for field in ("duplicate_window_s", "ack_timeout_s", "connect_timeout_s"):
            if not getattr(self, field) > 0:
                raise InvalidInputError(field, getattr(self, field), "must be a positive number of seconds")
        if self.patience_s is not None and self.patience_s < 0:
            raise InvalidInputError("patience_s", self.patience_s, "must be at least 0 seconds (or None: no limit)")


class RelayConsumer(Consumer):
    """Publishes every delivery to JetStream, acknowledged before `handle` returns (see the module docstring).

    `high_water` is the highest log position the stream is known to hold (None: not read yet, or empty).
    """

    name: ClassVar[str] = "relay"

    def __init__(self, settings: RelaySettings | None = None) -> None:
        """Starts the loop thread; connects on first use. Raises `StoreConfigError` without nats-py installed."""
        if importlib.util.find_spec("nats") is None:
            raise StoreConfigError("nats", "nats-py", "is not installed: pip install 'itertrack[nats]'")
        self.settings = settings or RelaySettings()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="itertrack-relay", daemon=True)
        self._thread.start()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._synced = False
        self._inbox = ""  # the relay's own reply subjects: <inbox>.<token>, one token per message sent
        self._token = 0
        self._replies: dict[str, asyncio.Future[Msg]] = {}
        self._high_water: int | None = None
        self._last_seq = 0
        self.published = 0  # messages the stream stored for this consumer (duplicates and skips excluded)
        self.skipped = 0  # deliveries already in the stream, not sent again
        self.retries = 0  # failed attempts waited out (NATS away, a refused message, a timeout)

    @property
    def high_water(self) -> int | None:
        """The highest log position the stream holds, as last read or acknowledged."""
        return self._high_water

    def handle(self, delivery: Delivery) -> None:
        """Publish one delivery; returns once the stream holds it. Raises `RelayUnavailableError` after
        `patience_s` without NATS, `RelayStreamError` or `RelayMessageError` (see their docstrings)."""
        self.handle_batch((delivery,))

    def handle_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Publish deliveries (in log order), pipelined; returns once the stream holds every one of them.

        Same errors as `handle`; after one, a prefix of the batch may be stored: call again with the same batch
        (or from any earlier position) and only the rest is published.
        """
        positions = [d.position for d in deliveries]
        if positions != sorted(set(positions)):
            raise InvalidInputError("deliveries", positions[:10], "must be in strictly increasing log order")
        if not deliveries:
            return
        with self._lock:
            self._with_patience(lambda: self._publish(deliveries), 1 + len(deliveries) // PIPELINE)

    def sync(self) -> int | None:
        """Connect, create the stream if missing, and read the highest position it holds (returned; None: empty).
        Waits for NATS as `handle` does; same errors."""
        with self._lock:
            self._with_patience(self._sync, 1)
            return self._high_water

    def close(self) -> None:
        """Disconnect and stop the loop thread; a `handle` waiting out an outage gives up with
        `RelayUnavailableError`. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            if self._nc is not None:
                try:
                    self._run(self._nc.close(), self.settings.connect_timeout_s)
                except (_Retry, StoreError, FutureCancelledError):
                    # The client may cancel its own close when its server is gone: what is acknowledged is stored.
                    log.debug("relay: NATS connection did not close cleanly", exc_info=True)
            try:
                self._run(self._cancel_tasks(), self.settings.connect_timeout_s)
            except (_Retry, FutureCancelledError):
                log.debug("relay: tasks of the NATS client did not stop", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self._loop.close()

    # -- the retry loop (runner's thread) --

    def _with_patience(self, attempt_once: Callable[[], Coroutine[Any, Any, None]], rounds: int) -> None:
        """Run `attempt_once()` on the loop until it succeeds, backing off between attempts, for `patience_s`."""
        patience = self.settings.patience_s
        deadline = None if patience is None else time.monotonic() + patience
        attempt = 0
        budget = self.settings.ack_timeout_s + self.settings.connect_timeout_s + 1.0
        while True:
            if self._closed.is_set():
                raise RelayUnavailableError("relay closed before NATS acknowledged the messages")
            try:
                self._run(attempt_once(), budget * rounds)
            except _Retry as e:
                self._synced = False
                attempt += 1
                self.retries += 1
                if deadline is not None and time.monotonic() >= deadline:
                    raise RelayUnavailableError(
                        f"NATS at {self.settings.url} did not acknowledge within {patience} s: {e}"
                    ) from e
                pause = random.uniform(0.5, 1.0) * min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
                log.warning("relay: %s; retrying in %.2f s (attempt %d)", e, pause, attempt)
                self._closed.wait(pause)
            else:
                return

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeoutError:
            future.cancel()
            raise _Retry(f"no answer from NATS within {timeout:.1f} s") from None

    # -- on the loop thread --

    async def _cancel_tasks(self) -> None:
        """Cancel what the client left running (a reconnect loop to a server that is gone)."""
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connect(self) -> JetStreamContext:
        import nats  # the `nats` extra: imported when first used, so the rest of itertrack runs without it
        from nats.errors import NoServersError

        if self._nc is not None and not self._nc.is_closed:
            assert self._js is not None
            return self._js
        try:
            self._nc = await nats.connect(
                self.settings.url,
                connect_timeout=self.settings.connect_timeout_s,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.1,
                name="itertrack-relay",
            )
        except (TimeoutError, NoServersError, OSError) as e:
            raise _Retry(f"cannot connect to NATS at {self.settings.url}: {type(e).__name__}: {e}") from e
        self._js = self._nc.jetstream(timeout=self.settings.ack_timeout_s)
        self._inbox = self._nc.new_inbox()
        await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)
        return self._js

    async def _sync(self) -> None:
        from nats.errors import Error as NatsError
        from nats.js.errors import BadRequestError, NotFoundError

        js = await self._connect()
        stream, wanted = self.settings.stream, self.settings.subjects
        try:
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                try:
                    info = await js.add_stream(
                        name=stream, subjects=[wanted], duplicate_window=self.settings.duplicate_window_s
                    )
                except BadRequestError as e:
                    raise RelayStreamError(f"cannot create stream {stream} on {wanted}: {e.description}") from e
                log.info("relay: created stream %s (subjects %s)", stream, wanted)
            subjects = info.config.subjects or []
            if wanted not in subjects:
                raise RelayStreamError(f"stream {stream} takes subjects {subjects}, not {wanted}")
            for _ in range(5):
                last_seq = info.state.last_seq
                if info.state.messages == 0:
                    self._last_seq, self._high_water, self._synced = last_seq, None, True
                    return
                try:
                    last = await js.get_last_msg(stream, wanted)
                except NotFoundError:
                    last = None
                if last is not None and last.seq == last_seq:
                    position = (last.headers or {}).get(POSITION_HEADER)
                    if position is None or not position.isdigit():
                        raise RelayStreamError(
                            f"stream {stream}'s last message (sequence {last.seq}, subject {last.subject}) "
                            f"was not published by a relay (no {POSITION_HEADER} header)"
                        )
                    self._last_seq, self._high_water, self._synced = last_seq, int(position), True
                    return
                info = await js.stream_info(stream)  # a message landed in between: read both again
            raise RelayStreamError(
                f"stream {stream}'s last message is not on {wanted}: another publisher writes to the stream"
            )
        except NatsError as e:
            raise _Retry(f"reading stream {stream}: {type(e).__name__}: {e}") from e

    async def _publish(self, deliveries: Sequence[Delivery]) -> None:
        if not self._synced:
            await self._sync()
        todo = [d for d in deliveries if self._high_water is None or d.position > self._high_water]
        self.skipped += len(deliveries) - len(todo)
        for start in range(0, len(todo), PIPELINE):
            await self._publish_chunk(todo[start : start + PIPELINE])

    async def _publish_chunk(self, chunk: Sequence[Delivery]) -> None:
        """Send the chunk in order, each message chained to the one before, then wait for every answer.

        Not `JetStreamContext.publish_async`: in nats-py 2.16 a refused message leaves its future pending for
        ever (nats-io/nats.py#985), so the answers come to an inbox of the relay's own (`_on_reply`).
        """
        from nats.errors import Error as NatsError
        from nats.errors import MaxPayloadError

        nc = self._nc
        assert nc is not None
        loop = asyncio.get_running_loop()
        tokens: list[str] = []
        try:
            for i, delivery in enumerate(chunk):
                self._token += 1
                token = str(self._token)
                tokens.append(token)
                self._replies[token] = loop.create_future()
                headers = headers_of(delivery)
                headers[EXPECTED_LAST_SEQUENCE_HEADER] = str(self._last_seq + i)
                headers[EXPECTED_STREAM_HEADER] = self.settings.stream
                subject = subject_of(delivery.agent_id, delivery.event_type, self.settings.subject_prefix)
                await nc.publish(subject, encode_message(delivery), reply=f"{self._inbox}.{token}", headers=headers)
            answers = await asyncio.wait_for(
                asyncio.gather(*(self._replies[t] for t in tokens)), timeout=self.settings.ack_timeout_s
            )
        except MaxPayloadError as e:
            raise RelayMessageError("message", delivery.key, f"is larger than the server's max payload: {e}") from e
        except (TimeoutError, NatsError, OSError) as e:
            raise _Retry(f"publishing to stream {self.settings.stream}: {type(e).__name__}: {e}") from e
        finally:
            for token in tokens:  # answers still on their way are read back from the stream instead
                self._replies.pop(token, None)
        for delivery, answer in zip(chunk, answers, strict=True):
            self._take_answer(delivery, answer)

    async def _on_reply(self, msg: Msg) -> None:
        future = self._replies.get(msg.subject.rpartition(".")[2])
        if future is not None and not future.done():
            future.set_result(msg)

    def _take_answer(self, delivery: Delivery, answer: Msg) -> None:
        """Count one acknowledged message, or raise for a refused one (`_Retry` unless retrying cannot help)."""
        where = f"event {delivery.key} at position {delivery.position}"
        if answer.headers and answer.headers.get("Status") == "503":
            raise _Retry(f"{where}: no JetStream stream answered (JetStream off, or the stream is gone)")
        try:
            data = json.loads(answer.data)
        except ValueError as e:
            raise _Retry(f"{where}: unreadable acknowledgement {answer.data[:80]!r}") from e
        error = data.get("error")
        if error is not None:
            if error.get("err_code") == MESSAGE_TOO_LARGE:
                raise RelayMessageError(
                    "message", delivery.key, f"is refused by stream {self.settings.stream}: {error.get('description')}"
                )
            raise _Retry(f"{where} refused: {error.get('description')} (code {error.get('err_code')})")
        if data.get("stream") != self.settings.stream:
            raise RelayStreamError(f"stream {data.get('stream')} took the relay's message, not {self.settings.stream}")
        if not data.get("duplicate", False):
            self.published += 1
        self._last_seq = max(self._last_seq, int(data["seq"]))
        self._high_water = delivery.position


# `itertrack consume relay -o KEY=VALUE`: the options and the settings they set.
RELAY_OPTIONS = {
    "nats": "url",
    "stream": "stream",
    "subject_prefix": "subject_prefix",
    "duplicate_window_s": "duplicate_window_s",
    "ack_timeout_s": "ack_timeout_s",
    "patience_s": "patience_s",
    "connect_timeout_s": "connect_timeout_s",
}


def relay_consumer(tracker: object, options: Mapping[str, str]) -> RelayConsumer:
    """The feed's factory of the relay (`itertrack consume relay -o nats=URL -o stream=NAME ...`; `itertrack relay`
    is the same consumer with its own options). Raises `InvalidInputError` naming an unknown option or a bad value."""
    del tracker  # the relay reads nothing of the store beyond what it is delivered
    values: dict[str, object] = {}
    for key, text in options.items():
        field = RELAY_OPTIONS.get(key)
        if field is None:
            raise InvalidInputError(
                "--option", key, f"is not an option of the relay (one of {', '.join(RELAY_OPTIONS)})"
            )
        if field.endswith("_s"):
            try:
                values[field] = float(text)
            except ValueError:
                raise InvalidInputError(key, text, "must be a number of seconds") from None
        else:
            values[field] = text
    return RelayConsumer(RelaySettings(**values))  # type: ignore[arg-type]
