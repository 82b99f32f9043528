"""Named consumers of the log (issue 15): delivery in log order from a durable checkpoint, exactly-once effects
for a TransactionalConsumer and at-least-once with stable keys otherwise (under kill -9), a handler that fails
stops the consumer at its event, retry and a recorded skip, one runner per name, --reset, and following through
a network cut. On a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from documents_support import payload
from feed_support import CollectingConsumer, KeysConsumer, RowsConsumer, rows_of
from support import TcpProxy, all_events, wait_for

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.feed.checkpoints import ConsumerCheckpoint, ConsumerTables
from itertrack.adapters.feed.runner import ConsumerFailedError, run_consumer
from itertrack.adapters.views.lock import ProjectionBusyError
from itertrack.domain import PerformanceTracker

Open = Callable[..., PerformanceTracker]
ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
TESTS = Path(__file__).resolve().parents[1]


def write_iterations(tracker: PerformanceTracker, count: int, agent: str = "agent-a", start: int = 1) -> list[Any]:
    """`count` iterations of three events each (Started, PhaseChanged, MetricsRecorded); their ids."""
    ids = []
    for n in range(start, start + count):
        iid = tracker.start_iteration(agent, n)
        tracker.update_phase(iid, "scan_generation")
        tracker.update_metrics(iid, {"scan_generation_tokens": n})
        ids.append(iid)
    return ids


def expected(tracker: PerformanceTracker) -> list[tuple[int, str, str | None]]:
    """(position, key, agent) of every event of the log, in log order."""
    store = store_of(tracker)
    notifications = store.recorder.select_notifications(start=1, limit=10**9)
    agents: dict[Any, str | None] = {}
    out = []
    for n in notifications:
        event = store.mapper.to_domain_event(n)
        agents.setdefault(event.originator_id, getattr(event, "agent_id", None))
        out.append((n.id, f"{event.originator_id}:{event.originator_version}", agents[event.originator_id]))
    return out


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ITERTRACK, *args], capture_output=True, text=True, timeout=120, check=False)


def status_of(store: str, name: str) -> dict[str, Any]:
    done = cli("consumers", "--json", "--store", store)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in payload(done.stdout, "consumers")["consumers"]}
    return rows[name]  # type: ignore[no-any-return]


# -- delivery ---------------------------------------------------------------------------------------------------


def test_every_event_in_log_order_from_the_checkpoint(durable_store: str, open_tracker: Open) -> None:
    """Each event once, in log order, with its position, key and agent; a second run starts after the checkpoint,
    and a consumer starting mid-log (fresh cache) still knows every event's agent."""
    tracker = open_tracker(durable_store)
    ids = write_iterations(tracker, 4, agent="agent-a")
    first = CollectingConsumer()
    assert run_consumer(tracker, first) == 12
    assert first.closed
    assert [(d.position, d.key, d.agent_id) for d in first.deliveries] == expected(tracker)
    assert [d.event_type for d in first.deliveries[:3]] == ["Started", "PhaseChanged", "MetricsRecorded"]
    # Later events of the same iterations (their Started is behind the checkpoint) and a new agent's.
    for iid in ids:
        tracker.update_phase(iid, "analysis")
    write_iterations(tracker, 1, agent="agent-b")
    second = CollectingConsumer()
    assert run_consumer(tracker, second) == 7
    assert [(d.position, d.key, d.agent_id) for d in second.deliveries] == expected(tracker)[12:]
    assert {d.agent_id for d in second.deliveries[:4]} == {"agent-a"}
    assert run_consumer(tracker, CollectingConsumer()) == 0


def test_event_types_filter_still_moves_the_checkpoint(durable_store: str, open_tracker: Open) -> None:
    tracker = open_tracker(durable_store)
    write_iterations(tracker, 3)
    consumer = CollectingConsumer(event_types=("MetricsRecorded",))
    assert run_consumer(tracker, consumer) == 3
    assert {d.event_type for d in consumer.deliveries} == {"MetricsRecorded"}
    assert ConsumerCheckpoint(ConsumerTables.of(store_of(tracker).factory), "collect").position() == 9


def test_transactional_consumer_writes_one_row_per_event(durable_store: str, open_tracker: Open) -> None:
    tracker = open_tracker(durable_store)
    write_iterations(tracker, 5)
    assert run_consumer(tracker, RowsConsumer(), batch_size=4) == 15
    assert rows_of(tracker) == [(key, pos) for pos, key, _ in expected(tracker)]


# -- kill -9 ----------------------------------------------------------------------------------------------------


class Writer:
    """Writes iterations from a thread of the test (its own tracker) until stopped."""

    def __init__(self, store: str) -> None:
        self.tracker = PerformanceTracker(store=store)
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 1
        try:
            while not self._stop.is_set():
                write_iterations(self.tracker, 1, agent=f"writer-{n % 3}", start=n)
                n += 1
        except BaseException as e:
            self.error = e

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=60)
        self.tracker.close()
        assert self.error is None, self.error


def kill_at_random_moments(store: str, kind: str, rounds: int, progressed: Callable[[], int]) -> None:
    """Start the consumer `kind` as a child process `rounds` times, each killed with SIGKILL at a random moment
    after it handled something more."""
    rng = random.Random(15)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    for _ in range(rounds):
        before = progressed()
        child = subprocess.Popen(
            [sys.executable, "-m", "feed_support", store, kind, "--follow"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(
                lambda b=before, c=child: progressed() > b or c.poll() is not None,  # type: ignore[misc]
                120,
                "the consumer to progress",
            )
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            time.sleep(rng.uniform(0.0, 0.4))  # a random moment: the scenario, not a wait for a condition
        finally:
            child.kill()
            child.wait(timeout=60)


@pytest.mark.slow
def test_transactional_consumer_exactly_once_under_kill_9(durable_store: str, open_tracker: Open) -> None:
    """Rows written in the checkpoint's transaction: whatever moment the consumer dies at, every event has
    exactly one row in the end (no duplicate, none missing)."""
    tracker = open_tracker(durable_store)
    write_iterations(tracker, 30, agent="seed")
    writer = Writer(durable_store)
    try:
        kill_at_random_moments(durable_store, "rows", 6, lambda: _rows_count(tracker))
    finally:
        writer.stop()
    run_consumer(tracker, RowsConsumer())
    rows = rows_of(tracker)
    want = [(key, pos) for pos, key, _ in expected(tracker)]
    assert len(rows) == len(want), "one row per event"
    assert sorted(rows, key=lambda r: r[1]) == want


def _rows_count(tracker: PerformanceTracker) -> int:
    try:
        return len(rows_of(tracker))
    except Exception:  # the table is made by the consumer's first run
        return 0


@pytest.mark.slow
def test_plain_consumer_at_least_once_under_kill_9(durable_store: str, open_tracker: Open, tmp_path: Path) -> None:
    """Keys appended by a plain consumer killed at random moments: no key missing; a repeat carries the same
    key for the same position."""
    tracker = open_tracker(durable_store)
    write_iterations(tracker, 30, agent="seed")
    path = tmp_path / "keys.txt"
    path.touch()
    writer = Writer(durable_store)

    def lines() -> int:
        return len(path.read_text(encoding="utf-8").splitlines())

    try:
        kill_at_random_moments(durable_store, f"keys:{path}", 6, lines)
    finally:
        writer.stop()
    run_consumer(tracker, KeysConsumer(path))
    seen = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    want = {key: pos for pos, key, _ in expected(tracker)}
    assert {key for key, _ in seen} == set(want), "every event handled at least once"
    assert all(int(pos) == want[key] for key, pos in seen), "a redelivery carries the same key and position"


# -- failure, retry, skip ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "transactional"])
def test_a_failing_handler_stops_at_its_event_until_retried_or_skipped(
    durable_store: str, open_tracker: Open, kind: str
) -> None:
    tracker = open_tracker(durable_store)
    write_iterations(tracker, 3)  # positions 1..9

    def consumer() -> CollectingConsumer | RowsConsumer:
        return CollectingConsumer(fail_at=frozenset({5})) if kind == "plain" else RowsConsumer(fail_at=frozenset({5}))

    name = "collect" if kind == "plain" else "rows"
    first = consumer()
    with pytest.raises(ConsumerFailedError, match="position 5"):
        run_consumer(tracker, first, batch_size=100)
    # A transactional consumer's batch rolls back and the events before the failing one are handled again, with
    # the failure, in one transaction.
    assert first.attempts[:5] == [1, 2, 3, 4, 5]
    assert max(first.attempts) == 5, "stopped at the failing event, never past it"
    if kind == "transactional":
        assert [pos for _, pos in rows_of(tracker)] == [1, 2, 3, 4]
    state = status_of(durable_store, name)
    assert (state["state"], state["position"], state["failed_position"]) == ("failed", 4, 5)
    assert "ValueError: cannot take event 5" in state["last_error"]
    # Failed from before: refused at once, nothing handled.
    again = consumer()
    with pytest.raises(ConsumerFailedError):
        run_consumer(tracker, again)
    assert again.attempts == []
    # Retry: the same event is handed to the handler again (and fails again here).
    done = cli("consumers", "retry", name, "--store", durable_store)
    assert done.returncode == 0, done.stderr
    retried = consumer()
    with pytest.raises(ConsumerFailedError):
        run_consumer(tracker, retried)
    assert retried.attempts == [5]
    # Skip exactly that event, recorded; the next run carries on after it.
    wrong = cli("consumers", "skip", name, "--position", "6", "--reason", "x", "--store", durable_store)
    assert wrong.returncode == 2
    assert "position=6" in wrong.stderr
    done = cli("consumers", "skip", name, "--position", "5", "--reason", "bad payload", "--store", durable_store)
    assert done.returncode == 0, done.stderr
    after = consumer()
    run_consumer(tracker, after)
    assert after.attempts == [6, 7, 8, 9]
    if kind == "transactional":
        assert [pos for _, pos in rows_of(tracker)] == [1, 2, 3, 4, 6, 7, 8, 9]
    state = status_of(durable_store, name)
    assert (state["state"], state["position"], state["lag_events"], state["last_error"]) == ("idle", 9, 0, None)
    [skip] = state["skips"]
    assert skip["position"] == 5
    assert skip["reason"] == "bad payload"
    assert skip["event_type"] == "PhaseChanged"
    assert skip["skipped_by"]
    assert skip["skipped_at"]
    assert "cannot take event 5" in skip["error"]


# -- one runner per name, reset, lag ----------------------------------------------------------------------------


@pytest.fixture
def following(open_tracker: Open) -> Iterator[Callable[..., threading.Event]]:
    """Runs consumers with `follow` in threads; stops them at the end."""
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def start(store: str, consumer: Any, errors: list[BaseException] | None = None) -> threading.Event:
        tracker = open_tracker(store)
        stop, started = threading.Event(), threading.Event()

        def run() -> None:
            try:
                run_consumer(tracker, consumer, follow=True, stop=stop, on_start=started.set)
            except BaseException as e:
                if errors is not None:
                    errors.append(e)
                started.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        stops.append((stop, thread))
        assert started.wait(60)
        return stop

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(timeout=60)


def test_two_runners_of_one_name_the_second_is_refused(
    durable_store: str, open_tracker: Open, following: Callable[..., threading.Event]
) -> None:
    tracker = open_tracker(durable_store)
    write_iterations(tracker, 2)
    first = CollectingConsumer()
    following(durable_store, first)
    wait_for(lambda: len(first.deliveries) == 6, 60, "the first runner to catch up")
    with pytest.raises(ProjectionBusyError, match="another runner of consumer 'collect'"):
        run_consumer(tracker, CollectingConsumer())
    assert status_of(durable_store, "collect")["state"] == "running"
    # Another name is another lock.
    assert run_consumer(tracker, RowsConsumer()) == 6


@pytest.mark.slow
def test_two_consume_commands_of_one_name_the_second_is_refused_or_waits(
    durable_store: str, open_tracker: Open
) -> None:
    """`itertrack consume log --follow` holds the name: a second `consume log` exits 1 with one clear line;
    with --wait it runs once the first stops (SIGTERM: it stops cleanly, exit 0)."""
    tracker = open_tracker(durable_store)
    write_iterations(tracker, 2)
    first = subprocess.Popen(
        [ITERTRACK, "consume", "log", "--follow", "--store", durable_store],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        lines = [first.stdout.readline() for _ in range(6)]  # the six events, caught up
        assert [json.loads(line)["position"] for line in lines] == list(range(1, 7))
        assert status_of(durable_store, "log")["state"] == "running"
        second = cli("consume", "log", "--store", durable_store)
        assert second.returncode == 1
        assert "another runner of consumer 'log' is already running" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr
        waiting = subprocess.Popen(
            [ITERTRACK, "consume", "log", "--wait", "--store", durable_store],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        write_iterations(tracker, 1, start=3)
        assert [json.loads(first.stdout.readline())["position"] for _ in range(3)] == [7, 8, 9]
        assert waiting.poll() is None, "waits while the first runs"
        first.terminate()
        assert first.wait(timeout=60) == 0
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, err
        assert out == "", "the first runner had handled every event: nothing left for the second"
    finally:
        first.kill()


def test_reset_delivers_again_from_zero(durable_store: str, open_tracker: Open) -> None:
    """--reset: a plain consumer is handed every event again; a transactional one's `reset` hook empties its rows
    in the same transaction, so it ends with one row per event, not two."""
    tracker = open_tracker(durable_store)
    write_iterations(tracker, 3)
    run_consumer(tracker, CollectingConsumer())
    again = CollectingConsumer()
    assert run_consumer(tracker, again, reset=True) == 9
    assert [d.position for d in again.deliveries] == list(range(1, 10))
    run_consumer(tracker, RowsConsumer())
    run_consumer(tracker, RowsConsumer(), reset=True)
    assert len(rows_of(tracker)) == 9
    log_first = cli("consume", "log", "--store", durable_store)
    log_again = cli("consume", "log", "--reset", "--store", durable_store)
    assert log_first.returncode == 0, log_first.stderr
    assert log_first.stdout == log_again.stdout
    assert [json.loads(line)["position"] for line in log_again.stdout.splitlines()] == list(range(1, 10))


def test_consumers_shows_lag_in_events_and_seconds(durable_store: str, open_tracker: Open) -> None:
    tracker = open_tracker(durable_store)
    write_iterations(tracker, 1)
    run_consumer(tracker, CollectingConsumer())
    write_iterations(tracker, 1, start=2)
    state = status_of(durable_store, "collect")
    assert (state["position"], state["latest"], state["lag_events"], state["state"]) == (3, 6, 3, "idle")
    events = all_events(tracker)
    assert state["lag_seconds"] == pytest.approx((events[5].timestamp - events[2].timestamp).total_seconds())
    assert state["lag_seconds"] > 0


# -- outages ----------------------------------------------------------------------------------------------------


def through(proxy: TcpProxy, store: str) -> str:
    """The store URL with its host and port replaced by the proxy's."""
    parts = urlsplit(store)
    netloc = parts.netloc.rsplit("@", 1)
    where = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{where}" if len(netloc) == 2 else where))


@pytest.mark.postgres
@pytest.mark.slow
def test_a_following_consumer_rides_out_a_network_cut(
    pg_store: str,
    open_tracker: Open,
    proxy: TcpProxy,
    following: Callable[..., threading.Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 3 s cut between a following consumer and PostgreSQL while a writer writes: it carries on from its
    checkpoint, and every event reaches it (at least once; exactly once for a transactional consumer)."""
    caplog.set_level(logging.INFO, logger="itertrack.consumer")
    tracker = open_tracker(pg_store)
    write_iterations(tracker, 3)
    plain = CollectingConsumer()
    errors: list[BaseException] = []
    following(through(proxy, pg_store), plain, errors)
    following(through(proxy, pg_store), RowsConsumer(), errors)
    wait_for(lambda: len(plain.deliveries) == 9 and _count(tracker) == 9, 60, "the first catch-up")
    proxy.cut()
    write_iterations(tracker, 5, start=10)  # the writer's own connection does not go through the proxy
    time.sleep(3.0)  # the outage's length (the scenario), not a wait for something to happen
    proxy.start()
    want = expected(tracker)
    wait_for(lambda: {d.position for d in plain.deliveries} == {p for p, _, _ in want}, 120, "every event")
    wait_for(lambda: _count(tracker) == len(want), 120, "every row")
    assert errors == []
    lost = [r for r in caplog.records if "lost the store" in r.getMessage()]
    assert len(lost) == 2, "one line per consumer per outage, not one per attempt"
    assert [pos for _, pos in rows_of(tracker)] == [p for p, _, _ in want]


def _count(tracker: PerformanceTracker) -> int:
    try:
        return len(rows_of(tracker))
    except Exception:  # the table is made by the consumer's first run
        return 0


class CheckedRows(RowsConsumer):
    """Rows in a table whose CHECK refuses position 5: the database, not the handler, raises."""

    name = "checked"

    def migrate(self, cursor: Any, sql_dialect: str) -> None:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS feed_rows (event_key TEXT NOT NULL, position BIGINT NOT NULL "
            "CHECK (position <> 5))"
        )


def test_a_database_error_in_a_batch_is_pinned_on_its_event(durable_store: str, open_tracker: Open) -> None:
    """The database refuses event 5's row (on PostgreSQL only when the pipelined batch syncs): the consumer stops
    at 5 with the database's error, and the rows of events 1..4 are committed with the checkpoint."""
    tracker = open_tracker(durable_store)
    write_iterations(tracker, 3)
    with pytest.raises(ConsumerFailedError, match="position 5"):
        run_consumer(tracker, CheckedRows(), batch_size=100)
    assert [pos for _, pos in rows_of(tracker)] == [1, 2, 3, 4]
    state = status_of(durable_store, "checked")
    assert (state["state"], state["position"], state["failed_position"]) == ("failed", 4, 5)
    assert "IntegrityError" in state["last_error"] or "CheckViolation" in state["last_error"]
