"""`itertrack relay` as a user runs it, on a real SQLite file and the real JetStream.

The end-to-end runs need the feed's runner (`itertrack.adapters.feed.runner.run_consumer`, issue 15's other
branch): they skip until it is merged, and run after.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from relay_support import delete_stream, drain, relay_settings, require_nats, write_iterations

from itertrack.adapters.feed.relay import RelaySettings
from itertrack.adapters.feed.schema import parse_message
from itertrack.domain import PerformanceTracker

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
needs_runner = pytest.mark.skipif(
    importlib.util.find_spec("itertrack.adapters.feed.runner") is None,
    reason="needs the feed runner (itertrack.adapters.feed.runner), merged from the feed branch",
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ITERTRACK, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def settings() -> Iterator[RelaySettings]:
    chosen = relay_settings(require_nats())
    yield chosen
    delete_stream(chosen.url, chosen.stream)


def test_a_bad_stream_name_is_one_line_naming_it(sqlite_store: str) -> None:
    result = run("relay", "--stream", "a.b", "--store", sqlite_store)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        r"itertrack: error: stream='a.b': must be a JetStream stream name (no spaces, . * > / \)"
    ]


@needs_runner
def test_relay_once_twice_publishes_each_event_once(sqlite_store: str, settings: RelaySettings) -> None:
    """To run after merge: two `--once` runs (the second after more writes) leave each event once in the stream."""
    with PerformanceTracker(store=sqlite_store, migrate=True) as tracker:
        write_iterations(tracker, ["a.b", "c"], each=2)
    args = ("--nats", settings.url, "--stream", settings.stream, "--subject-prefix", settings.subject_prefix)
    first = run("relay", *args, "--store", sqlite_store, "--once")
    assert first.returncode == 0, first.stderr
    with PerformanceTracker(store=sqlite_store) as tracker:
        write_iterations(tracker, ["d"], each=1)
    second = run("relay", *args, "--store", sqlite_store, "--once")
    assert second.returncode == 0, second.stderr
    messages = drain(settings, "counter", 25)
    positions = [parse_message(m.data).position for m in messages]
    assert len(positions) == 25
    assert positions == sorted(set(positions))
