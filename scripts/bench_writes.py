"""Benchmark rows for the write paths: a tracked change, a whole iteration's tracked calls, 8 writer processes.

Every floor is the cheapest durable insert of the same row with the plain driver (see `bench_support`): one
autocommit INSERT, one round trip on PostgreSQL (prepared), one statement in SQLite's implicit transaction with
the store's WAL journal and synchronous setting. Each row interleaves the tracker with its floor in one run."""

from __future__ import annotations

import multiprocessing
import statistics
import time
import uuid
from collections.abc import Callable
from itertools import cycle
from pathlib import Path
from typing import Any

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.demo.fakes import FakeBacktester, FakeLLM, FakeScanner, Scenario, SimulatedClock
from itertrack.domain import Iteration, IterationRecord, PerformanceTracker, SystemClock
from itertrack.domain.service.learning_flow import LearningIterationService
from scripts.bench_support import (
    PostgresFloor,
    Row,
    SQLiteFloor,
    median_ms,
    percentile,
    side_by_side,
    sqlite_durability,
)

PHASES = ["scan_generation", "scan_execution", "backtest_execution", "analysis"]
CALLS_PER_ITERATION = 12  # start, 4 phases, 4 metrics, 1 LLM call, save, completed: see `learning_flow_calls`
FLOOR = "one autocommit insert"


def check_sqlite_durability(tracker: PerformanceTracker, floor: SQLiteFloor) -> None:
    """Raise `RuntimeError` unless the floor commits with the journal and synchronous setting of the store's
    writer connection (read from the store when it exposes that connection)."""
    writer = getattr(store_of(tracker).recorder, "_writer", None)
    if not callable(writer):
        return
    ours, theirs = sqlite_durability(writer()), floor.durability()
    if ours != theirs:
        msg = f"SQLite floor (journal, synchronous) {theirs} differs from the store's {ours}"
        raise RuntimeError(msg)


def changer(tracker: PerformanceTracker, iid: uuid.UUID) -> Callable[[], None]:
    """Alternately a metrics update and a phase change on one running iteration."""
    phases = cycle(PHASES)
    count = [0]

    def change() -> None:
        count[0] += 1
        if count[0] % 2:
            tracker.update_metrics(iid, {"backtest_execution_time_ms": 1520})
        else:
            tracker.update_phase(iid, next(phases))

    return change


def tracked_change(store: str, floor: SQLiteFloor | PostgresFloor, label: str, rounds: int, repeat: int) -> Row:
    """Row: one tracked change on a running iteration (alternately `update_metrics` and `update_phase`), median
    ms per call over interleaved rounds of `repeat` calls, against the floor's insert of the same row."""
    with PerformanceTracker(store=store, migrate=True) as tracker:
        if isinstance(floor, SQLiteFloor):
            check_sqlite_durability(tracker, floor)
        change = changer(tracker, tracker.start_iteration("bench", 1))
        for _ in range(50):
            change()
            floor.insert()
        ours, theirs = side_by_side(change, floor.insert, rounds, repeat)
    ratio = ours / theirs
    return Row(
        path=f"tracked change, {label}",
        measured=f"{ours:.3f} ms",
        floor=f"{theirs:.3f} ms {FLOOR}",
        ratio=round(ratio, 2),
        target="<= 1.5x",
        met=ratio <= 1.5,
    )


def learning_flow_calls(tracker: PerformanceTracker, agent: str, number: int) -> uuid.UUID:
    """One iteration's tracked calls as the learning flow makes them, without its work in between
    (`CALLS_PER_ITERATION` calls, one event each): start, then per phase `update_phase` and its time
    metric, one LLM call, the saving step (record and event in one transaction), completed. Returns its id."""
    iid = tracker.start_iteration(agent, number)
    for phase in PHASES:
        tracker.update_phase(iid, phase)
        tracker.update_metrics(iid, {f"{phase}_time_ms": 12.5})
    tracker.record_llm_call(
        iid,
        "analysis",
        model="claude-sonnet-4-5",
        usage={"input_tokens": 1200, "output_tokens": 300},
        duration_ms=850.0,
    )
    tracker.save_iteration(
        IterationRecord(
            id=iid,
            agent_id=agent,
            iteration_number=number,
            strategy={"s": 1},
            analysis={"a": 1},
            created_at=tracker.clock.now(),
        )
    )
    tracker.update_phase(iid, "completed")
    return iid


def tracked_calls(store: str, floor: SQLiteFloor | PostgresFloor, label: str, iterations: int) -> Row:
    """Row (issue 18's measurement): ms per tracked call over `iterations` whole iterations of the learning
    flow's 12 calls, each iteration followed by the floor doing 12 inserts; medians of the per-iteration
    means, after a warm-up of 10 iterations."""
    with PerformanceTracker(store=store, migrate=True) as tracker:
        if isinstance(floor, SQLiteFloor):
            check_sqlite_durability(tracker, floor)
        agent = f"calls-{uuid.uuid4().hex[:6]}"
        written = len(tracker.history(learning_flow_calls(tracker, agent, 0)))
        if written != CALLS_PER_ITERATION:
            msg = f"an iteration of the learning flow's calls wrote {written} events, not {CALLS_PER_ITERATION}"
            raise RuntimeError(msg)
        ours, theirs = [], []
        for n in range(-10, iterations):
            started = time.perf_counter()
            learning_flow_calls(tracker, agent, n + 11)  # numbers 1, 2, ...
            middle = time.perf_counter()
            for _ in range(CALLS_PER_ITERATION):
                floor.insert()
            ended = time.perf_counter()
            if n >= 0:
                ours.append((middle - started) * 1000 / CALLS_PER_ITERATION)
                theirs.append((ended - middle) * 1000 / CALLS_PER_ITERATION)
    mine, base = statistics.median(ours), statistics.median(theirs)
    ratio = mine / base
    return Row(
        path=f"tracked call, whole iterations of {CALLS_PER_ITERATION} calls, {label}",
        measured=f"{mine:.3f} ms per call",
        floor=f"{base:.3f} ms {FLOOR}",
        ratio=round(ratio, 2),
        target="<= 1.5x",
        met=ratio <= 1.5,
        note=(
            f"{iterations} iterations interleaved with {CALLS_PER_ITERATION} floor inserts each; medians; per "
            f"iteration p90 {percentile(ours, 90) * CALLS_PER_ITERATION:.2f} ms vs floor "
            f"{percentile(theirs, 90) * CALLS_PER_ITERATION:.2f} ms"
        ),
    )


def whole_iteration(store: str, floor: Callable[[], None], label: str, iterations: int) -> Row:
    """Row: the learning flow with fakes that take no time, against as many floor inserts (one autocommit
    insert each) as the iteration wrote events, right after it; medians over `iterations`."""
    system = SystemClock()
    clock = SimulatedClock(start=system.now(), new_id=system.new_id)
    with PerformanceTracker(store=store, migrate=True, clock=clock) as tracker:
        scenario = Scenario(clock, seed=1, failure_rate=0.0)
        service = LearningIterationService(tracker, FakeLLM(scenario), FakeScanner(scenario), FakeBacktester(scenario))
        times, events, floors = [], [], []
        for n in range(iterations):
            started = time.perf_counter()
            outcome = service.run_iteration(f"agent-{n % 3}", n)
            times.append((time.perf_counter() - started) * 1000)
            count = len(tracker.history(outcome.iteration_id))
            events.append(count)
            # The floor right beside it: as many raw inserts as the iteration wrote events.
            started = time.perf_counter()
            for _ in range(count):
                floor()
            floors.append((time.perf_counter() - started) * 1000)
    ours = statistics.median(times)
    theirs = statistics.median(floors)
    ratio = ours / theirs
    return Row(
        path=f"whole iteration (learning flow, zero-time fakes), {label}",
        measured=f"{ours:.2f} ms for {statistics.median(events):.0f} events",
        floor=f"{theirs:.2f} ms ({statistics.median(events):.0f} x {FLOOR})",
        ratio=round(ratio, 2),
        target="<= 1.5x",
        met=ratio <= 1.5,
    )


def _tracker_writer(store: str, changes: int, ready: Any, gate: Any, results: Any) -> None:
    with PerformanceTracker(store=store, migrate=False) as tracker:
        change = changer(tracker, tracker.start_iteration(f"writer-{uuid.uuid4().hex[:6]}", 1))
        ready.put(True)
        gate.wait(60)
        started = time.perf_counter()
        for _ in range(changes):
            change()
        results.put((changes, started, time.perf_counter()))


def _floor_writer(  # noqa: PLR0917  # multiprocessing passes arguments by position
    url: str, schema: str, changes: int, ready: Any, gate: Any, results: Any
) -> None:
    """A raw writer process: its own autocommit connection, one prepared INSERT round trip per change."""
    floor = PostgresFloor(url, schema)
    ready.put(True)
    gate.wait(60)
    started = time.perf_counter()
    for _ in range(changes):
        floor.insert()
    results.put((changes, started, time.perf_counter()))


def _events_per_second(target: Callable[..., None], args: tuple[Any, ...], processes: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    ready, gate, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, ready, gate, results)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)  # every process is connected before the timing starts
    gate.set()
    done = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    total = sum(int(d[0]) for d in done)
    return float(total / (max(d[2] for d in done) - min(d[1] for d in done)))


def eight_writers(url: str, schema: str, changes: int) -> Row:
    """Row: 8 processes each changing its own iteration, against 8 raw writer processes (each on its own
    autocommit connection, one prepared INSERT round trip per change into one shared events-shaped table);
    events per second from the first start to the last end."""
    store = f"{url}?schema={schema}&pool_size=1&max_overflow=1"
    PerformanceTracker(store=store, migrate=True).close()
    PostgresFloor(url, schema).close()  # the table, created once before the writers start
    ours = _events_per_second(_tracker_writer, (store, changes), 8)
    theirs = _events_per_second(_floor_writer, (url, schema, changes), 8)
    ratio = ours / theirs
    return Row(
        path="8 writer processes, PostgreSQL",
        measured=f"{ours:,.0f} events/s",
        floor=f"{theirs:,.0f} inserts/s (8 processes, {FLOOR} each)",
        ratio=round(ratio, 2),
        target=">= 0.8x",
        met=ratio >= 0.8,
    )


def change_vs_history(folder: Path, floor: SQLiteFloor, lengths: tuple[int, ...]) -> Row:
    """Scaling row: a tracked change on iterations with 10, 100 and 1,000 events must cost the same."""
    store = f"sqlite:///{folder / 'history.db'}"
    with PerformanceTracker(store=store, migrate=True) as tracker:
        changes = []
        for length in lengths:
            it = Iteration.start(uuid.uuid4(), "bench", length, tracker.clock.now())
            for n in range(length - 1):
                it.record_metrics({"analysis_tokens": n}, tracker.clock.now())
            store_of(tracker).app.save(it)
            changes.append(changer(tracker, it.id))
            changes[-1]()
        # Interleaved rounds: each length is measured beside the others, not minutes apart.
        samples: list[list[float]] = [[] for _ in lengths]
        floors = []
        for _ in range(7):
            floors.append(median_ms(floor.insert, 50))
            for index, change in enumerate(changes):
                samples[index].append(median_ms(change, 50))
    costs = [statistics.median(s) for s in samples]
    base = statistics.median(floors)
    flat = max(costs) / min(costs)
    return Row(
        path="tracked change vs history length (10 / 100 / 1,000 events), SQLite",
        measured=" / ".join(f"{c:.3f}" for c in costs) + " ms",
        floor=f"{base:.3f} ms {FLOOR}",
        ratio=round(flat, 2),
        target="flat (max/min <= 1.3)",
        met=flat <= 1.3,
        note="ratio here is slowest/fastest length",
    )


def write_rows(folder: Path, pg_url: str, pg_schema: str, quick: bool) -> list[Row]:
    """Every write-path row, on SQLite and PostgreSQL."""
    rounds, repeat = (3, 30) if quick else (7, 100)
    sqlite_floor = SQLiteFloor(folder / "floor.db")
    pg_floor = PostgresFloor(pg_url, pg_schema)
    sqlite_store = f"sqlite:///{folder / 'writes.db'}"
    pg_store = f"{pg_url}?schema={pg_schema}"
    iterations = 10 if quick else 300
    return [
        tracked_change(sqlite_store, sqlite_floor, "SQLite file", rounds, repeat),
        tracked_change(pg_store, pg_floor, "PostgreSQL", rounds, repeat),
        tracked_calls(sqlite_store, sqlite_floor, "SQLite file", iterations),
        tracked_calls(pg_store, pg_floor, "PostgreSQL", iterations),
        whole_iteration(sqlite_store, sqlite_floor.insert, "SQLite file", 10 if quick else 60),
        whole_iteration(pg_store, pg_floor.insert, "PostgreSQL", 10 if quick else 60),
        eight_writers(pg_url, pg_schema, 50 if quick else 500),
        change_vs_history(folder, sqlite_floor, (10, 100) if quick else (10, 100, 1000)),
    ]
