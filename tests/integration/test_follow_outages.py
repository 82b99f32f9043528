"""`itertrack project --follow` through blips: it rides out an outage and carries on; it stops only on a signal
or on a failure waiting cannot fix, with one clear line (issue 12, item 4).

Each test runs the follower as a real process and ends with the views equal to a fold of the events.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from support import TcpProxy, assert_same_models, fold_models, view_models, wait_for

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import view_for
from itertrack.domain import PerformanceTracker

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
Open = Callable[..., PerformanceTracker]
CUT_S = 3.0  # the network cut
HOLD_S = 3.0  # a SQLite write lock held three times the follower's busy timeout, after the follower met it

pytestmark = pytest.mark.slow


class FollowProcess:
    """`itertrack project --follow` as a child process, its stdout and stderr lines collected as they come."""

    def __init__(self, store: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [ITERTRACK, "project", "--follow", "--store", store],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._collect, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._collect, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        wait_for(lambda: any("following" in line for line in self.out), 120, "follow mode", interval=0.01)

    @staticmethod
    def _collect(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def said(self, part: str) -> int:
        """How many stderr lines contain `part`."""
        return sum(part in line for line in list(self.err))

    def finish(self, timeout: float = 60) -> int:
        """Wait for the process to end and its output to be read; its exit code."""
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def followers() -> Iterator[Callable[..., FollowProcess]]:
    started: list[FollowProcess] = []

    def start(store: str, env: dict[str, str] | None = None) -> FollowProcess:
        started.append(FollowProcess(store, env))
        return started[-1]

    yield start
    for follower in started:
        follower.kill()


def write_iterations(tracker: PerformanceTracker, count: int, agent: str = "blip") -> None:
    for n in range(count):
        iid = tracker.start_iteration(agent, n)
        tracker.update_phase(iid, "scan_generation")
        tracker.update_metrics(iid, {"scan_generation_tokens": n + 1})
        tracker.update_phase(iid, "completed")


def caught_up(tracker: PerformanceTracker) -> Callable[[], bool]:
    view = view_for(store_of(tracker).factory)
    return lambda: view.position() == (store_of(tracker).recorder.max_notification_id() or 0)


def stop_cleanly(follower: FollowProcess) -> None:
    """SIGTERM: it stops, says so, exits 0, without a traceback."""
    follower.proc.send_signal(signal.SIGTERM)
    assert follower.finish() == 0, follower.err
    assert "stopped" in follower.out
    assert not any("Traceback" in line for line in follower.err), follower.err


def assert_views_equal_a_fold(tracker: PerformanceTracker) -> None:
    assert_same_models(view_models(view_for(store_of(tracker).factory)), fold_models(tracker))


def through(proxy: TcpProxy, store: str) -> str:
    """The store URL with its host and port replaced by the proxy's."""
    parts = urlsplit(store)
    netloc = parts.netloc.rsplit("@", 1)
    where = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{where}" if len(netloc) == 2 else where))


@pytest.mark.postgres
def test_follow_survives_its_backends_being_terminated(
    pg_store: str, open_tracker: Open, followers: Callable[..., FollowProcess]
) -> None:
    """pg_terminate_backend on every connection of the follower (LISTEN, reads, the lock's): it keeps running,
    events written afterwards reach the views, and it still holds the projection lock."""
    tracker = open_tracker(pg_store)
    write_iterations(tracker, 5)
    app_name = f"itertrack-follow-test-{uuid.uuid4().hex[:8]}"
    follower = followers(pg_store, {"PGAPPNAME": app_name})
    wait_for(caught_up(tracker), 60, "the follower's first catch-up")
    with psycopg.connect(pg_store.split("?", 1)[0], autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (app_name,),
        ).fetchall()
    assert len(rows) >= 2, "the follower's LISTEN and lock connections at least"
    write_iterations(tracker, 5)
    wait_for(caught_up(tracker), 60, "the events written after the termination in the views")
    wait_for(lambda: follower.said("the store is back") == 1, 60, "the follower to say it is back")
    assert follower.proc.poll() is None, follower.err
    assert follower.said("lost the store") == 1, follower.err
    second = subprocess.run(
        [ITERTRACK, "project", "--store", pg_store], capture_output=True, text=True, timeout=120, check=False
    )
    assert second.returncode == 1, "the follower took its projection lock again"
    assert "already keeping this store's read models" in second.stderr
    assert_views_equal_a_fold(tracker)
    stop_cleanly(follower)


@pytest.mark.postgres
def test_follow_survives_a_network_cut_and_catches_up(
    pg_store: str, open_tracker: Open, followers: Callable[..., FollowProcess], proxy: TcpProxy
) -> None:
    """A 3 s cut between the follower and PostgreSQL while a writer writes: one warning, one line when it is
    back, and the views catch up with everything written during the cut."""
    tracker = open_tracker(pg_store)
    write_iterations(tracker, 5)
    follower = followers(through(proxy, pg_store))
    wait_for(caught_up(tracker), 60, "the follower's first catch-up")
    proxy.cut()
    wait_for(lambda: follower.said("lost the store") == 1, 60, "the follower to notice the cut")
    write_iterations(tracker, 10)  # the writer's own connection does not go through the proxy
    time.sleep(CUT_S)  # the outage's length (the scenario), not a wait for something to happen
    proxy.start()
    wait_for(caught_up(tracker), 60, "the events written during the cut in the views")
    wait_for(lambda: follower.said("the store is back") == 1, 60, "the follower to say it is back")
    assert follower.proc.poll() is None, follower.err
    assert follower.said("lost the store") == 1, f"one warning per outage, not one per attempt: {follower.err}"
    assert_views_equal_a_fold(tracker)
    stop_cleanly(follower)


def test_follow_survives_a_held_sqlite_write_lock(
    sqlite_store: str, open_tracker: Open, followers: Callable[..., FollowProcess]
) -> None:
    """Another connection holds SQLite's write lock (BEGIN IMMEDIATE) past the follower's busy timeout while
    events wait to be applied: the follower waits it out, and catches up once the lock is released."""
    tracker = open_tracker(sqlite_store)
    write_iterations(tracker, 3)
    follower = followers(sqlite_store, {"ITERTRACK_LOCK_TIMEOUT": "1"})
    wait_for(caught_up(tracker), 60, "the follower's first catch-up")
    follower.proc.send_signal(signal.SIGSTOP)  # so that it meets the new events only once the lock is held
    try:
        write_iterations(tracker, 3)
        holder = sqlite3.connect(sqlite_store.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    finally:
        follower.proc.send_signal(signal.SIGCONT)
    try:
        wait_for(lambda: follower.said("lost the store: database is locked") == 1, 60, "the follower to meet the lock")
        time.sleep(HOLD_S)  # the lock's hold (the scenario): several more attempts meet it
        assert follower.proc.poll() is None, follower.err
    finally:
        holder.execute("COMMIT")
        holder.close()
    write_iterations(tracker, 2)
    wait_for(caught_up(tracker), 60, "the views after the lock was released")
    wait_for(lambda: follower.said("the store is back") == 1, 60, "the follower to say it is back")
    assert_views_equal_a_fold(tracker)
    stop_cleanly(follower)


def test_a_dropped_view_table_stops_follow_with_one_clear_line(
    durable_store: str, open_tracker: Open, followers: Callable[..., FollowProcess]
) -> None:
    """A failure waiting cannot fix (a read-model table dropped under it): one line naming the store's refusal,
    exit 1, no traceback, no retrying."""
    tracker = open_tracker(durable_store)
    write_iterations(tracker, 2)
    follower = followers(durable_store)
    wait_for(caught_up(tracker), 60, "the follower's first catch-up")
    if durable_store.startswith("sqlite"):
        with sqlite3.connect(durable_store.removeprefix("sqlite:///")) as conn:
            conn.execute("DROP TABLE iteration_current")
    else:
        schema = durable_store.split("schema=", 1)[1].split("&", 1)[0]
        with psycopg.connect(durable_store.split("?", 1)[0], autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE {}.iteration_current").format(sql.Identifier(schema)))
    write_iterations(tracker, 1)
    assert follower.finish(timeout=60) == 1, follower.err
    errors = [line for line in follower.err if line.startswith("itertrack: error:")]
    assert len(errors) == 1, follower.err
    assert "iteration_current" in errors[0]
    assert "waiting cannot fix this" in errors[0]
    assert follower.said("lost the store") == 0, "no retrying what waiting cannot fix"
    assert not any("Traceback" in line for line in follower.err), follower.err


@pytest.mark.postgres
def test_sigterm_during_the_back_off_stops_follow_at_once(
    pg_store: str, open_tracker: Open, followers: Callable[..., FollowProcess], proxy: TcpProxy
) -> None:
    """While PostgreSQL is cut off and the follower waits to try again, SIGTERM stops it at once, not after the
    wait: its back-off is set to 120 s here (with equal jitter the first wait is at least 60 s), so a follower that
    sat out its wait before stopping could not end within the 30 s the test allows, however busy the machine."""
    tracker = open_tracker(pg_store)
    slow_retries = {"ITERTRACK_FOLLOW_RETRY_FIRST": "120", "ITERTRACK_FOLLOW_RETRY_MAX": "120"}
    follower = followers(through(proxy, pg_store), slow_retries)
    wait_for(caught_up(tracker), 60, "the follower's first catch-up")
    proxy.cut()
    # The warning is logged as the first back-off wait (60 s or more here) begins.
    wait_for(lambda: follower.said("lost the store") == 1, 60, "the follower to notice the cut")
    assert follower.proc.poll() is None, follower.err
    follower.proc.send_signal(signal.SIGTERM)
    assert follower.finish(timeout=30) == 0, follower.err
    assert "stopped" in follower.out
    assert not any("Traceback" in line for line in follower.err), follower.err
