"""Benchmark rows for the write paths: a tracked change, a whole iteration, 8 writer processes."""

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
from itertrack.domain import Iteration, PerformanceTracker, SystemClock
from itertrack.domain.service.learning_flow import LearningIterationService
from scripts.bench_support import PostgresFloor, Row, SQLiteFloor, median_ms, side_by_side

PHASES = ["scan_generation", "scan_execution", "backtest_execution", "analysis"]


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


def tracked_change(store: str, floor: Callable[[], None], label: str, rounds: int, repeat: int) -> Row:
    """Row: one tracked change against the same row inserted and committed with the plain driver."""
    with PerformanceTracker(store=store, migrate=True) as tracker:
        change = changer(tracker, tracker.start_iteration("bench", 1))
        for _ in range(50):
            change()
            floor()
        ours, theirs = side_by_side(change, floor, rounds, repeat)
    ratio = ours / theirs
    return Row(
        path=f"tracked change, {label}",
        measured=f"{ours:.3f} ms",
        floor=f"{theirs:.3f} ms raw insert+commit",
        ratio=round(ratio, 2),
        target="<= 1.3x",
        met=ratio <= 1.3,
    )


def whole_iteration(store: str, floor: Callable[[], None], label: str, iterations: int) -> Row:
    """Row: the learning flow with fakes that take no time, against one raw insert per event it writes."""
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
        floor=f"{theirs:.2f} ms ({statistics.median(events):.0f} raw inserts)",
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
    """Row: 8 processes each changing its own iterations, against 8 processes doing raw inserts."""
    store = f"{url}?schema={schema}&pool_size=1&max_overflow=1"
    PerformanceTracker(store=store, migrate=True).close()
    PostgresFloor(url, schema).conn.close()
    ours = _events_per_second(_tracker_writer, (store, changes), 8)
    theirs = _events_per_second(_floor_writer, (url, schema, changes), 8)
    ratio = ours / theirs
    return Row(
        path="8 writer processes, PostgreSQL",
        measured=f"{ours:,.0f} events/s",
        floor=f"{theirs:,.0f} raw inserts/s",
        ratio=round(ratio, 2),
        target=">= 0.5x",
        met=ratio >= 0.5,
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
        floor=f"{base:.3f} ms raw insert+commit",
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
    return [
        tracked_change(sqlite_store, sqlite_floor.insert, "SQLite file", rounds, repeat),
        tracked_change(pg_store, pg_floor.insert, "PostgreSQL", rounds, repeat),
        whole_iteration(sqlite_store, sqlite_floor.insert, "SQLite file", 10 if quick else 60),
        whole_iteration(pg_store, pg_floor.insert, "PostgreSQL", 10 if quick else 60),
        eight_writers(pg_url, pg_schema, 50 if quick else 500),
        change_vs_history(folder, sqlite_floor, (10, 100) if quick else (10, 100, 1000)),
    ]
