"""Probe of the async tracker's throughput (issue 13): what the design allows against what the tracker does.

    .venv/bin/python -m scripts.probe_async_ceiling [--rounds 3] [--iterations 200] [--waves 5]

Per round, on fresh SQLite files in a temporary folder, three figures in changes per second:

- *floor*: one autocommit insert per change with plain sqlite3 (`bench_support.SQLiteFloor`, as `make bench`);
- *ceiling*: the async tracker's shape with none of its work: `iterations` tasks each await a future per change
  (`CHANGES_PER_ITERATION` per iteration, `waves` iterations per task, as `bench_async.concurrent_iterations`);
  a change is a ready-made row (the floor's) put on a queue; one thread writes every row waiting in one
  transaction (`executemany`, the same durability) and settles the batch's futures with one
  `call_soon_threadsafe`. No checks, no events, no encoding, no group commit: the most an asyncio host with one
  writer thread gets from shared commits on this machine;
- *tracker*: `bench_async.concurrent_iterations` itself, with the CPU time per change of the event loop's thread
  (`time.thread_time`) and of every other thread (`resource.getrusage` less the loop's).

Prints one line per round and the medians. Wall-clock figures: report `uptime` with them.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import resource
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

from itertrack.adapters.ids import random_uuid4
from scripts.bench_async import CHANGES_PER_ITERATION, concurrent_iterations, floor_rate
from scripts.bench_support import SQLITE_INSERT, STATE, TOPIC, SQLiteFloor, sqlite_floor_connection

Row = tuple[str, int, str, bytes]


Waiting = queue.SimpleQueue[tuple[asyncio.Future[None], Row] | None]


def _settle(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        future.set_result(None)


def _write_waiting(conn: sqlite3.Connection, waiting: Waiting, loop: asyncio.AbstractEventLoop) -> None:
    """The writer thread: every row waiting in one transaction, then the batch's futures in one wake-up."""
    insert = SQLITE_INSERT.format(table="stored_events")
    stop = False
    while not stop and (first := waiting.get()) is not None:
        batch, stop = _take_waiting(first, waiting)
        conn.execute("BEGIN")
        conn.executemany(insert, [row for _, row in batch])
        conn.execute("COMMIT")
        loop.call_soon_threadsafe(_settle, [future for future, _ in batch])


def _take_waiting(
    first: tuple[asyncio.Future[None], Row], waiting: Waiting
) -> tuple[list[tuple[asyncio.Future[None], Row]], bool]:
    """`first` and every item waiting behind it; and whether the stop mark (None) was among them."""
    batch = [first]
    while True:
        try:
            item = waiting.get_nowait()
        except queue.Empty:
            return batch, False
        if item is None:
            return batch, True
        batch.append(item)


async def ceiling_rate(path: Path, iterations: int, waves: int) -> float:
    """Changes per second of the design with no tracker work in it (see the module's docstring)."""
    loop = asyncio.get_running_loop()
    conn = sqlite_floor_connection(path, check_same_thread=False)
    waiting: Waiting = queue.SimpleQueue()
    thread = threading.Thread(target=_write_waiting, args=(conn, waiting, loop), daemon=True)
    thread.start()

    async def host_task() -> None:
        for _ in range(waves):
            oid = random_uuid4().hex  # not uuid.uuid4(): os.urandom would stall the loop (adapters/ids.py)
            for version in range(CHANGES_PER_ITERATION):
                future = loop.create_future()
                waiting.put((future, (oid, version, TOPIC, STATE)))
                await future

    started = time.perf_counter()
    await asyncio.gather(*(host_task() for _ in range(iterations)))
    elapsed = time.perf_counter() - started
    waiting.put(None)
    thread.join()
    conn.close()
    return iterations * waves * CHANGES_PER_ITERATION / elapsed


def tracker_round(path: Path, iterations: int, waves: int) -> tuple[float, float, float]:
    """(changes/s, loop thread's CPU us per change, other threads' CPU us per change) of the async tracker."""
    changes = iterations * waves * CHANGES_PER_ITERATION
    before, loop_before = resource.getrusage(resource.RUSAGE_SELF), time.thread_time()
    rate, _ = asyncio.run(concurrent_iterations(f"sqlite:///{path}", iterations, True, waves=waves))
    after, loop_after = resource.getrusage(resource.RUSAGE_SELF), time.thread_time()
    process = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    loop_cpu = loop_after - loop_before
    return rate, loop_cpu / changes * 1e6, (process - loop_cpu) / changes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--waves", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"floor": [], "ceiling": [], "tracker": []}
    with tempfile.TemporaryDirectory() as folder:
        for n in range(args.rounds):
            floor = SQLiteFloor(Path(folder) / f"floor-{n}.db")
            floor.insert()
            floor_per_s = floor_rate(floor.insert, 2_000)
            floor.conn.close()
            ceiling = asyncio.run(ceiling_rate(Path(folder) / f"ceiling-{n}.db", args.iterations, args.waves))
            tracked, loop_us, other_us = tracker_round(Path(folder) / f"tracker-{n}.db", args.iterations, args.waves)
            for name, value in (("floor", floor_per_s), ("ceiling", ceiling), ("tracker", tracked)):
                figures[name].append(value)
            print(
                f"round {n + 1}: floor {floor_per_s:,.0f}/s; ceiling {ceiling:,.0f}/s ({ceiling / floor_per_s:.1f}x); "
                f"tracker {tracked:,.0f}/s ({tracked / floor_per_s:.2f}x), CPU per change: loop {loop_us:.0f} us, "
                f"other threads {other_us:.0f} us",
                flush=True,
            )
    medians = {name: statistics.median(values) for name, values in figures.items()}
    print(
        f"medians: floor {medians['floor']:,.0f}/s, ceiling {medians['ceiling']:,.0f}/s, "
        f"tracker {medians['tracker']:,.0f}/s"
    )


if __name__ == "__main__":
    main()
