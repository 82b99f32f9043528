"""The read models on SQLite and PostgreSQL: exact values, read-your-writes, and rebuilds."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from uuid import UUID

import pytest
from fake_clock import FakeClock
from support import assert_same_models, fold_models, view_models

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.store.url import parse_store_url
from itertrack.adapters.views.keeper import ReadModels, view_for
from itertrack.domain import PerformanceTracker, Status, StoreConfigError

Open = Callable[..., PerformanceTracker]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(step_ms=0)


@pytest.fixture
def tracked(
    durable_store: str, open_tracker: Open, clock: FakeClock
) -> Iterator[tuple[PerformanceTracker, ReadModels]]:
    tracker = open_tracker(durable_store, clock=clock)
    with ReadModels(tracker) as views:
        yield tracker, views


def script(tracker: PerformanceTracker, clock: FakeClock) -> tuple[UUID, UUID, UUID]:
    """Three iterations over two agents: one re-enters a phase and regenerates twice, one fails, one runs on."""
    clock.at(0)
    a = tracker.start_iteration("agent-1", 1)
    clock.at(100)
    tracker.update_phase(a, "scan_generation")
    clock.at(300)
    tracker.update_metrics(a, {"scan_generation_tokens": 1200, "scan_generation_time_ms": 200})
    clock.at(400)
    tracker.update_phase(a, "execution_generation")
    clock.at(450)
    tracker.update_metrics(a, {"execution_generation_tokens": 800})
    clock.at(500)
    tracker.update_metrics(a, {"execution_generation_tokens": 400})
    clock.at(600)
    tracker.update_phase(a, "scan_generation")
    clock.at(1000)
    tracker.update_phase(a, "completed")
    clock.at(1100)
    b = tracker.start_iteration("agent-1", 2)
    clock.at(1200)
    tracker.update_phase(b, "backtest_execution")
    clock.at(1300)
    tracker.update_metrics(b, {"scan_generation_tokens": 50})
    clock.at(3200)
    tracker.update_phase(b, "failed", error="backtester: timeout")
    clock.at(3300)
    c = tracker.start_iteration("agent-2", 1)
    clock.at(3400)
    tracker.update_phase(c, "analysis")
    clock.at(3500)
    tracker.update_metrics(c, {"analysis_tokens": 10})
    return a, b, c


def test_every_read_model_equals_hand_computed_values(
    tracked: tuple[PerformanceTracker, ReadModels], clock: FakeClock
) -> None:
    """Current phase, metric totals per iteration/agent/overall and phase durations match values worked out by hand."""
    tracker, views = tracked
    a, b, c = script(tracker, clock)

    rows = {r.id: r for r in views.iterations()}
    assert [r.id for r in views.iterations()] == [c, b, a]  # newest first
    assert (rows[a].phase, rows[a].status, rows[a].last_version) == ("completed", Status.COMPLETED, 8)
    assert (rows[b].phase, rows[b].status, rows[b].error) == ("failed", Status.FAILED, "backtester: timeout")
    assert (rows[c].phase, rows[c].status, rows[c].finished_at) == ("analysis", Status.RUNNING, None)
    t0 = rows[a].started_at
    b_finished = rows[b].finished_at
    assert b_finished is not None
    assert (b_finished - t0).total_seconds() == 3.2
    assert (rows[c].phase_entered_at - t0).total_seconds() == 3.4
    assert [r.id for r in views.iterations(agent="agent-1", status="failed")] == [b]
    assert [r.id for r in views.iterations(phase="analysis")] == [c]

    assert {m.metric: m.total for m in views.metrics(a)} == {
        "scan_generation_tokens": 1200,
        "scan_generation_time_ms": 200,
        "execution_generation_tokens": 1200,
    }
    assert {(m.metric, m.total, m.iterations) for m in views.agent_metrics("agent-1")} == {
        ("scan_generation_tokens", 1250, 2),
        ("scan_generation_time_ms", 200, 1),
        ("execution_generation_tokens", 1200, 1),
    }
    assert {(m.metric, m.total, m.iterations) for m in views.overall_metrics()} == {
        ("scan_generation_tokens", 1250, 2),
        ("scan_generation_time_ms", 200, 1),
        ("execution_generation_tokens", 1200, 1),
        ("analysis_tokens", 10, 1),
    }

    # scan_generation: 100->400 and 600->1000; the last stay ends at the terminal event.
    assert {(d.phase, d.duration_ms, d.visits) for d in views.phase_durations(a)} == {
        ("initializing", 100.0, 1),
        ("scan_generation", 700.0, 2),
        ("execution_generation", 200.0, 1),
    }
    assert {(d.phase, d.duration_ms, d.visits) for d in views.phase_durations(b)} == {
        ("initializing", 100.0, 1),
        ("backtest_execution", 2000.0, 1),
    }
    # A running iteration's open stay is not counted until it ends.
    assert {(d.phase, d.duration_ms, d.visits) for d in views.phase_durations(c)} == {
        ("initializing", 100.0, 1),
        ("analysis", 0.0, 1),
    }


def test_a_read_right_after_a_write_sees_it(tracked: tuple[PerformanceTracker, ReadModels], clock: FakeClock) -> None:
    """Each write is visible to the next query in the same process, with no waiting."""
    tracker, views = tracked
    iid = tracker.start_iteration("agent-1", 1)
    for n, phase in enumerate(["scan_generation", "scan_execution", "backtest_execution", "analysis"] * 5):
        clock.at(n)
        tracker.update_phase(iid, phase)
        assert views.current_phase(iid).phase == phase
        tracker.update_metrics(iid, {"analysis_tokens": 1})
        assert {m.metric: m.total for m in views.metrics(iid)} == {"analysis_tokens": n + 1}


def test_views_equal_a_fold_of_the_history_and_a_rebuild(
    tracked: tuple[PerformanceTracker, ReadModels], clock: FakeClock
) -> None:
    """After incremental updates, the views equal a fold of all events; emptying and rebuilding gives the same."""
    tracker, views = tracked
    for n in range(30):
        script(tracker, clock)
        clock.at(10_000 + n)
    views.sync()
    expected = fold_models(tracker)
    assert_same_models(view_models(views.view), expected)
    views.view.reset()
    assert views.view.position() == 0
    assert views.view.iterations() == []
    views.batch_size = 7  # many batch boundaries
    views.sync()
    assert_same_models(view_models(views.view), expected)
    assert views.position().lag == 0


def test_two_appliers_never_apply_an_event_twice(durable_store: str, open_tracker: Open) -> None:
    """Two trackers' read models applying the same log concurrently end exact (compare-and-set on the position)."""
    writer = open_tracker(durable_store)
    first, second = ReadModels(writer, background=False), ReadModels(open_tracker(durable_store), background=False)
    try:
        for n in range(40):
            iid = writer.start_iteration(f"agent-{n % 3}", n)
            writer.update_metrics(iid, {"analysis_tokens": 3})
            (first if n % 2 else second).sync()
        first.batch_size = second.batch_size = 5
        first.view.reset()
        appliers = (first, second, first, second)
        start = threading.Barrier(len(appliers), timeout=120)  # all running before any of them applies
        errors: list[BaseException] = []

        def apply(views: ReadModels) -> None:
            try:
                start.wait()
                views.sync()
            except BaseException as e:  # reported below, not lost in the thread
                errors.append(e)

        threads = [threading.Thread(target=apply, args=(rm,)) for rm in appliers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "an applier was still running after 300 s"
        assert errors == []
        assert_same_models(view_models(first.view), fold_models(writer))
        assert {(a.agent_id, a.total, a.iterations) for a in first.view.agent_metrics()} == {
            ("agent-0", 42, 14),
            ("agent-1", 39, 13),
            ("agent-2", 39, 13),
        }
    finally:
        first.close()
        second.close()


def test_read_models_refuse_the_memory_store(open_tracker: Open) -> None:
    """The memory store has no read-model tables; the error says so."""
    with pytest.raises(StoreConfigError, match="read models need a SQLite or PostgreSQL store"):
        ReadModels(open_tracker("memory://"))


def test_views_from_an_older_version_gain_new_columns_and_are_rebuilt(sqlite_store: str, open_tracker: Open) -> None:
    """A SQLite file whose iteration_current lacks `failed_in` gets the column and a rebuild with its values."""
    tracker = open_tracker(sqlite_store)
    iid = tracker.start_iteration("agent-1", 1)
    tracker.update_phase(iid, "backtest_execution")
    tracker.update_phase(iid, "failed", error="boom")
    ReadModels(tracker, background=False).sync()
    with sqlite3.connect(parse_store_url(sqlite_store).path) as conn:
        conn.execute("ALTER TABLE iteration_current DROP COLUMN failed_in")
    view = view_for(store_of(tracker).factory)
    assert view.position() == 0  # emptied, to be rebuilt
    with ReadModels(tracker, background=False) as views:
        assert views.current_phase(iid).failed_in == "backtest_execution"


@pytest.mark.postgres
def test_a_notification_sent_before_the_runner_listens_does_not_leave_a_read_waiting(
    pg_store: str, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library's subscription pulls once, then only on a NOTIFY; a commit before its LISTEN takes effect
    sends one nobody hears. A read waiting for that event must still get it (it waited forever before)."""
    import eventsourcing.postgres  # noqa: PLC0415  # the class whose thread the test holds back

    listen = eventsourcing.postgres.PostgresSubscription._listen  # noqa: SLF001  # held back below
    go = threading.Event()

    def late_listen(self: eventsourcing.postgres.PostgresSubscription) -> None:
        go.wait(30)
        listen(self)

    monkeypatch.setattr(eventsourcing.postgres.PostgresSubscription, "_listen", late_listen)
    tracker, other = open_tracker(pg_store), open_tracker(pg_store, migrate=False)
    iid = tracker.start_iteration("agent-1", 1)
    views = ReadModels(tracker)
    try:
        assert views.current_phase(iid).phase == "initializing"  # the runner's first pull is done
        other.update_phase(iid, "analysis")  # another process: no save listener here wakes the runner
        go.set()  # the LISTEN starts after that commit's NOTIFY
        answered: list[str] = []
        reader = threading.Thread(target=lambda: answered.append(views.current_phase(iid).phase), daemon=True)
        reader.start()
        reader.join(30)
        assert answered == ["analysis"]
    finally:
        go.set()
        views.close()
