"""Every writer of the views (follower, rebuild, in-process keeper, a command's catch-up) goes through one lock,
taken first, so they never deadlock and never write rows folded from data a rebuild has emptied (issue 12, item 3).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from psycopg import sql
from support import assert_same_models, fold_models, view_models, wait_for

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import ReadModels, view_for
from itertrack.adapters.views.runner import catch_up
from itertrack.domain import PerformanceTracker

Open = Callable[..., PerformanceTracker]

TRACKING = "itertrack_read_models_tracking"


def write(tracker: PerformanceTracker, iterations: int, first: int = 0) -> None:
    """Four events per iteration, spread over three agents (whose rows every batch then touches)."""
    for n in range(first, first + iterations):
        iid = tracker.start_iteration(f"agent-{n % 3}", n)
        tracker.update_phase(iid, "scan_generation")
        tracker.update_metrics(iid, {"scan_generation_tokens": n + 1})
        tracker.update_phase(iid, "completed")


def schema_of(store: str) -> str:
    return parse_qs(urlsplit(store).query)["schema"][0]


class Background:
    """Runs a call in a thread and keeps what it raised."""

    def __init__(self, target: Callable[[], object], name: str) -> None:
        self.raised: list[BaseException] = []

        def run() -> None:
            try:
                target()
            except BaseException as e:  # the test asserts on whatever ended the call
                self.raised.append(e)

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join(60)
        assert not self.thread.is_alive(), f"{self.thread.name} did not finish"


@contextmanager
def paused_after_position_update(postgres_url: str, schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A trigger that stops any views batch right after its tracking-row update, until the block ends; yields the
    connection holding the pause (its backend is what the paused batch waits for)."""
    key = 0x17E12
    holder = psycopg.connect(postgres_url, autocommit=True)
    s = sql.Identifier(schema)
    holder.execute("SELECT pg_advisory_lock(%s)", (key,))
    holder.execute(
        sql.SQL(
            "CREATE FUNCTION {}.pause_batch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "PERFORM pg_advisory_lock_shared({}); PERFORM pg_advisory_unlock_shared({}); RETURN NEW; END $$"
        ).format(s, sql.Literal(key), sql.Literal(key))
    )
    holder.execute(
        sql.SQL(
            "CREATE TRIGGER pause_batch AFTER UPDATE ON {}.{} FOR EACH ROW EXECUTE FUNCTION {}.pause_batch()"
        ).format(s, sql.Identifier(TRACKING), s)
    )
    try:
        yield holder
    finally:
        holder.execute("SELECT pg_advisory_unlock(%s)", (key,))
        holder.close()


def blocked_by(conn: psycopg.Connection[Any], pid: int) -> list[int]:
    rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)).fetchall()
    return [int(r[0]) for r in rows]


@pytest.mark.postgres
def test_a_rebuild_beside_a_batch_paused_after_its_position_update_waits_instead_of_deadlocking(
    pg_store: str, postgres_url: str, open_tracker: Open
) -> None:
    """The issue's deterministic case: a batch paused right after its tracking-row update, and a rebuild's reset.
    The reset emptied view rows the batch then upserts, while waiting for the tracking row: `deadlock detected`.
    Now the reset waits for the views' lock, the batch commits, then the reset empties the views."""
    host = open_tracker(pg_store)
    write(host, 6)
    view = view_for(store_of(host).factory)
    catch_up(host, view)
    write(host, 6, first=6)  # the same three agents: the batch upserts their rows
    operator = open_tracker(pg_store)  # another process's views writer: its own connections
    with paused_after_position_update(postgres_url, schema_of(pg_store)) as holder:
        holder_pid = int(holder.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        batch = Background(lambda: catch_up(host, view), "batch")
        wait_for(lambda: bool(blocked_by(holder, holder_pid)), timeout=30, what="the batch to pause after its update")
        (batch_pid,) = blocked_by(holder, holder_pid)
        reset = Background(view_for(store_of(operator).factory).reset, "reset")
        wait_for(lambda: bool(blocked_by(holder, batch_pid)), timeout=30, what="the reset to wait for the batch")
    batch.join()
    reset.join()
    assert batch.raised == []
    assert reset.raised == []
    catch_up(host, view)
    assert_same_models(view_models(view), fold_models(host))


@pytest.mark.postgres
@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_deadlock_or_serialization_failure_of_a_batch_is_tried_again(
    pg_store: str, postgres_url: str, open_tracker: Open, sqlstate: str
) -> None:
    """A batch the server rolls back as a deadlock victim or a serialization failure is applied on a second try,
    instead of stopping the catch-up with the error."""
    tracker = open_tracker(pg_store)
    write(tracker, 3)
    view = view_for(store_of(tracker).factory)
    catch_up(tracker, view)
    write(tracker, 3, first=3)
    s = sql.Identifier(schema_of(pg_store))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SEQUENCE {}.failures").format(s))
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {}.fail_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF nextval('{}.failures') = 1 THEN "
                "RAISE EXCEPTION 'made by a test' USING ERRCODE = {}; END IF; RETURN NEW; END $$"
            ).format(s, sql.SQL(s.as_string(conn)), sql.Literal(sqlstate))
        )
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER fail_once AFTER UPDATE ON {}.{} FOR EACH ROW EXECUTE FUNCTION {}.fail_once()"
            ).format(s, sql.Identifier(TRACKING), s)
        )
        assert catch_up(tracker, view) == 12
        tries = conn.execute(sql.SQL("SELECT last_value FROM {}.failures").format(s)).fetchone()
    assert tries is not None
    assert tries[0] == 2  # failed once, then went in
    assert_same_models(view_models(view), fold_models(tracker))


@pytest.mark.slow
def test_rebuilds_beside_a_running_keeper_and_a_writer_end_with_views_equal_to_a_fold(
    durable_store: str, open_tracker: Open
) -> None:
    """A host keeps its views in process while it writes; an operator rebuilds them five times meanwhile (as
    `itertrack project --rebuild` does, from its own connections). No writer fails, and the views end equal to a
    fold of the log: no rows folded from data a reset had emptied (the issue saw n = 504 where the events say 1004)."""
    host = open_tracker(durable_store)
    operator = open_tracker(durable_store)
    write(host, 3)
    stop = threading.Event()
    written = [3]

    def keep_writing() -> None:
        while not stop.is_set():
            write(host, 1, first=written[0])
            written[0] += 1

    with ReadModels(host) as views:
        writer = Background(keep_writing, "writer")
        operator_view = view_for(store_of(operator).factory)
        for _ in range(5):
            start = written[0]
            wait_for(lambda start=start: written[0] >= start + 3, timeout=30, what="the host to write more")  # type: ignore[misc]
            operator_view.reset()
            catch_up(operator, operator_view)
        stop.set()
        writer.join()
        assert writer.raised == []
        views.sync()
        assert_same_models(view_models(views.view), fold_models(host))
