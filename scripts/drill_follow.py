"""The follow-through-outage drill: `itertrack project --follow` keeps the views current through a PostgreSQL
"restart" and a SQLite write lock held past its busy timeout, while writers write; it ends with the views
equal to a fold of the events.

The restart is simulated, never done: the machine's PostgreSQL serves other work. The follower reaches
PostgreSQL through a TCP proxy; the drill cuts it, terminates every backend the follower had (by its
application name), refuses connections for a few seconds, then lets them through again.
"""

from __future__ import annotations

import functools
import os
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import view_for
from itertrack.adapters.views.tables import ViewTables
from itertrack.domain import PerformanceTracker
from itertrack.domain.model.errors import StoreUnavailableError
from scripts.drill_support import ITERTRACK, check, say, verified
from scripts.tcp_proxy import TcpProxy

NAME = "follow-through-outage"
RESTART_S = 3.0  # how long the simulated restart refuses connections
LOCK_HOLD_S = 8.0  # the held SQLite write lock (the follower's busy timeout is 5 s)


def follow_through_outage(store: str, seconds: float) -> None:
    """`project --follow` beside writers through a PostgreSQL restart and an 8 s SQLite write lock: it keeps
    running, says so once per outage, and the views equal a fold of the events."""
    small = seconds < 30  # the smoke test's few seconds: shorter holds, a shorter busy timeout
    _through_a_restart(store, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        _through_a_held_lock(f"sqlite:///{Path(tmp) / 'follow.db'}", seconds, small=small)
    say(NAME, "the follower rode out both outages and its views equal a fold of the events")


class _Writers:
    """Threads that write short iterations until stopped; an outage's refusals are counted, not fatal."""

    def __init__(self, tracker: PerformanceTracker, count: int = 2) -> None:
        self.tracker = tracker
        self.stop = threading.Event()
        self.written = 0
        self.refused = 0
        self._threads = [threading.Thread(target=self._write, args=(n,)) for n in range(count)]
        for thread in self._threads:
            thread.start()

    def _write(self, n: int) -> None:
        k = 0
        while not self.stop.is_set():
            try:
                iid = self.tracker.start_iteration(f"follow-writer-{n}", k)
                self.tracker.update_metrics(iid, {"scan_generation_tokens": k + 1})
                self.tracker.update_phase(iid, "completed")
                self.written += 1
            except StoreUnavailableError:
                self.refused += 1
            k += 1
            self.stop.wait(0.005)

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=120)


class _Follower:
    """`itertrack project --follow` as a process, its stderr in a file."""

    def __init__(self, store: str, folder: Path, env: dict[str, str]) -> None:
        self.log = folder / "follow.stderr"
        with self.log.open("w") as stderr:
            self.proc = subprocess.Popen(
                [ITERTRACK, "project", "--follow", "--store", store],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, **env},
            )

    def said(self, part: str) -> int:
        return self.log.read_text().count(part)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        check(time.monotonic() < deadline, NAME, f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)  # the polling interval of a wait on a condition


def _following(tracker: PerformanceTracker, writers: _Writers) -> None:
    """Wait until the writers wrote some and the follower applied the log as it was then."""
    _until(lambda: writers.written >= 20, 120, "the writers to write")
    target = store_of(tracker).recorder.max_notification_id() or 0
    view = view_for(store_of(tracker).factory)
    _until(lambda: view.position() >= target, 120, "the follower to follow")


def _caught_up(tracker: PerformanceTracker) -> Callable[[], bool]:
    view = view_for(store_of(tracker).factory)
    return lambda: view.position() == (store_of(tracker).recorder.max_notification_id() or 0)


def _end(follower: _Follower, tracker: PerformanceTracker, writers: _Writers, what: str) -> None:
    """Stop the writers; the follower catches up by itself, said one warning and one recovery, exits 0 on
    SIGTERM; then verify (versions, records, every read-model row against a fold)."""
    writers.finish()
    _until(_caught_up(tracker), 120, f"the follower to catch up after {what}")
    check(follower.proc.poll() is None, NAME, f"the follower exited ({follower.proc.returncode}) after {what}")
    lost, back = follower.said("lost the store"), follower.said("the store is back")
    check(lost == 1, NAME, f"{lost} 'lost the store' lines for one outage: {follower.log.read_text()[-2000:]}")
    check(back == 1, NAME, f"{back} 'the store is back' lines for one outage")
    code = follower.stop()
    check(code == 0, NAME, f"the follower exited {code} on SIGTERM: {follower.log.read_text()[-2000:]}")
    say(NAME, f"[{what}] {writers.written:,} iterations written ({writers.refused} refused during the outage)")
    say(NAME, f"[{what}] the follower said: {' | '.join(follower.log.read_text().strip().splitlines())}")
    verified(NAME, tracker)


def _through_a_restart(store: str, seconds: float) -> None:
    target = urlsplit(store)
    proxy = TcpProxy(target.port or 5432, target.hostname or "127.0.0.1")
    proxy.start()
    user = target.netloc.rsplit("@", 1)[0] + "@" if "@" in target.netloc else ""
    proxied = urlunsplit(target._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))
    app_name = f"itertrack-follow-drill-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp, PerformanceTracker(store=store, migrate=True) as tracker:
        follower = _Follower(proxied, Path(tmp), {"PGAPPNAME": app_name})
        writers = _Writers(tracker, count=0)
        try:
            writers = _Writers(tracker)
            _following(tracker, writers)
            time.sleep(min(seconds / 4, 5.0))  # writing and following before the restart
            with psycopg.connect(store.split("?", 1)[0], autocommit=True) as admin:
                # As a stopping server does: every backend ends (57P01), then connections are refused.
                killed = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s AND pid <> pg_backend_pid()",
                    (app_name,),
                ).fetchall()
                proxy.cut()
            say(NAME, f"[restart] terminated the follower's {len(killed)} backends and refused connections")
            time.sleep(RESTART_S)  # the restart's length: connections are refused meanwhile
            proxy.start()
            say(NAME, f"[restart] accepting connections again after {RESTART_S:.0f} s")
            time.sleep(min(seconds / 4, 5.0))  # writing and following after it
            _end(follower, tracker, writers, "restart")
        finally:
            writers.finish()
            if follower.proc.poll() is None:
                follower.proc.kill()
            proxy.cut()


def _moved_past(view: ViewTables, position: int) -> bool:
    return view.position() > position


def _lock_while_paused(follower: _Follower, holder: sqlite3.Connection, tracker: PerformanceTracker) -> None:
    """Pause the follower with events left to apply, and take the file's write lock. A follower paused inside its
    own write transaction (applying a batch) holds the lock: it is let go on, and paused again."""
    view = view_for(store_of(tracker).factory)
    deadline = time.monotonic() + 60
    while True:
        follower.proc.send_signal(signal.SIGSTOP)
        _until(lambda: not _caught_up(tracker)(), 60, "an event the follower has not applied")
        try:
            holder.execute("BEGIN IMMEDIATE")  # waits up to the connection's 1 s timeout
        except sqlite3.OperationalError:
            stopped_at = view.position()
            follower.proc.send_signal(signal.SIGCONT)
            if time.monotonic() > deadline:
                raise
            _until(functools.partial(_moved_past, view, stopped_at), 60, "the follower to commit its transaction")
        else:
            return


def _through_a_held_lock(store: str, seconds: float, *, small: bool) -> None:
    hold = 3.0 if small else LOCK_HOLD_S
    busy = "1" if small else "5"
    with tempfile.TemporaryDirectory() as tmp, PerformanceTracker(store=store, migrate=True) as tracker:
        follower = _Follower(store, Path(tmp), {"ITERTRACK_LOCK_TIMEOUT": busy})
        writers = _Writers(tracker, count=0)
        try:
            writers = _Writers(tracker)
            _following(tracker, writers)
            time.sleep(min(seconds / 4, 5.0))  # writing and following before the lock
            # The follower is paused while the lock is taken, so that it meets it with events to apply.
            holder = sqlite3.connect(store.removeprefix("sqlite:///"), isolation_level=None, timeout=1.0)
            try:
                _lock_while_paused(follower, holder, tracker)
                follower.proc.send_signal(signal.SIGCONT)
                held = time.monotonic()
                _until(lambda: follower.said("lost the store") == 1, 60, "the follower to meet the lock")
                time.sleep(max(0.0, hold - (time.monotonic() - held)))  # the lock's hold (the scenario)
            finally:
                follower.proc.send_signal(signal.SIGCONT)
                if holder.in_transaction:
                    holder.rollback()
                holder.close()
            say(NAME, f"[sqlite lock] held the write lock {hold:.0f} s (the follower's busy timeout: {busy} s)")
            time.sleep(min(seconds / 4, 5.0))  # writing and following after it
            _end(follower, tracker, writers, "sqlite lock")
        finally:
            writers.finish()
            if follower.proc.poll() is None:
                follower.proc.kill()
