"""`itertrack relay --follow` killed with SIGKILL at random moments while a host writes: in the end the stream holds
every event of the log exactly once, in log order (issue 15's relay drill, as a test)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.errors import NotFoundError
from relay_support import delete_stream, drain, relay_settings, require_nats, run
from support import wait_for

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.feed.relay import RelaySettings
from itertrack.adapters.feed.schema import parse_message
from itertrack.domain import PerformanceTracker

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


def stored(settings: RelaySettings) -> int:
    """How many messages the stream holds (0 before the relay created it)."""

    async def count() -> int:
        nc = await nats.connect(settings.url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
        try:
            info = await nc.jetstream().stream_info(settings.stream)
            return int(info.state.messages)
        except NotFoundError:  # the stream does not exist yet
            return 0
        finally:
            await nc.close()

    return run(count())


@pytest.mark.slow
def test_a_relay_killed_at_random_moments_leaves_every_event_once_in_the_stream(sqlite_store: str) -> None:
    settings = relay_settings(require_nats())
    args = ["--nats", settings.url, "--stream", settings.stream, "--subject-prefix", settings.subject_prefix]
    rng = random.Random(15)
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_writing() -> None:
        try:
            with PerformanceTracker(store=sqlite_store) as tracker:
                n = 0
                while not stop.is_set():
                    iid = tracker.start_iteration(f"agent.{n % 3}", n)
                    tracker.update_phase(iid, "analysis")
                    tracker.update_phase(iid, "completed")
                    n += 1
        except BaseException as e:  # the test fails on whatever stopped the writer
            errors.append(e)

    PerformanceTracker(store=sqlite_store, migrate=True).close()
    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    try:
        for _ in range(4):
            before = stored(settings)
            child = subprocess.Popen(
                [ITERTRACK, "relay", *args, "--store", sqlite_store, "--follow"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                wait_for(lambda b=before: stored(settings) > b, 60, "the relay to publish more")  # type: ignore[misc]
                time.sleep(rng.uniform(0.0, 0.3))  # a random moment: the scenario, not a wait for a condition
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait(timeout=60)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert errors == []
    try:
        once = [ITERTRACK, "relay", *args, "--store", sqlite_store, "--once"]
        last = subprocess.run(once, capture_output=True, text=True, timeout=120, check=False)
        assert last.returncode == 0, last.stderr
        with PerformanceTracker(store=sqlite_store) as tracker:
            latest = store_of(tracker).recorder.max_notification_id() or 0
        messages: list[Any] = drain(settings, "counter", latest, timeout=30)
        positions = [parse_message(m.data).position for m in messages]
        assert positions == list(range(1, latest + 1))  # every event, once, in log order
    finally:
        delete_stream(settings.url, settings.stream)
