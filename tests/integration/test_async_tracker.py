"""The async tracker (issue 13): call order per iteration, cancellation as an outcome, the loop never waiting on the
store, and closing with changes in flight; on real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import defaultdict
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from spool_support import through
from support import TcpProxy

from itertrack.adapters.aio import AsyncPerformanceTracker
from itertrack.adapters.bootstrap import spooling_writer, store_of
from itertrack.domain import (
    InvalidIterationIdError,
    InvalidMetricError,
    Iteration,
    IterationNotFoundError,
    PerformanceTracker,
    Status,
    StoreError,
)

DEADLINE_S = 60  # every await here is bounded: a hang fails the test instead of stalling the suite


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, DEADLINE_S))


def metric_values(events: list[Iteration.Event]) -> list[int]:
    return [int(e.metrics["analysis_tokens"]) for e in events if isinstance(e, Iteration.MetricsRecorded)]


def test_changes_fired_from_many_tasks_land_in_each_iterations_call_order(durable_store: str) -> None:
    """1,000 changes fired (as tasks, not awaited one by one) from 50 tasks to 10 iterations: each iteration's
    events hold them in the order the calls were made."""

    async def main() -> None:
        async with AsyncPerformanceTracker(durable_store, migrate=True) as tracker:
            iids = [await tracker.start_iteration(f"agent-{n % 3}", n) for n in range(10)]
            made: dict[UUID, list[int]] = defaultdict(list)
            fired: list[asyncio.Task[None]] = []
            shuffle = random.Random(7)

            async def host_task(t: int) -> None:
                for k in range(20):
                    iid = iids[shuffle.randrange(10)]
                    value = t * 100 + k + 1
                    made[iid].append(value)  # the call is made now ...
                    fired.append(asyncio.create_task(tracker.update_metrics(iid, {"analysis_tokens": value})))
                    if k % 3 == 0:
                        await asyncio.sleep(0)  # ... and other host tasks make theirs in between

            await asyncio.gather(*(host_task(t) for t in range(50)))
            await asyncio.gather(*fired)
            assert sum(len(v) for v in made.values()) == 1000
            for iid in iids:
                assert metric_values(await tracker.history(iid)) == made[iid]

    run(main())


def test_changes_from_many_tasks_share_transactions_and_one_conflict_in_the_batch_is_retried_alone(
    tmp_path: Path,
) -> None:
    """50 changes to 50 iterations fired at once while another process holds the SQLite file's write lock: they are
    decided on the loop and written in at most a few transactions once the lock is released. One iteration was
    changed meanwhile by another tracker (this process's copy is stale): only that change loses its race, and it is
    re-applied on the stored iteration; the 49 others land in their shared transaction, each await returning None."""
    path = tmp_path / "itertrack.db"
    store = f"sqlite:///{path}"

    async def main() -> None:
        async with AsyncPerformanceTracker(f"{store}?lock_timeout=60", migrate=True) as tracker:
            # Ids in 50 different lanes (lock stripes): no change waits in its lane behind another's.
            ids: dict[int, UUID] = {}
            while len(ids) < 50:
                candidate = uuid4()
                ids.setdefault(tracker.sync.lane_of(candidate), candidate)
            iids = [await tracker.start_iteration("agent-1", n, iid) for n, iid in enumerate(ids.values())]
            stale = iids[25]
            with PerformanceTracker(store) as other:
                other.update_metrics(stale, {"analysis_tokens": 1000})
            group = store_of(tracker.sync).group
            commits_before, conflicts_before = group.commits, tracker.sync.conflicts_retried
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            change = tracker.update_metrics
            fired = [asyncio.create_task(change(iid, {"analysis_tokens": n + 1})) for n, iid in enumerate(iids)]
            cached = tracker.sync.ports.store

            def decided() -> bool:  # every change applied to this process's copies: all wait for the writer
                copies = [cached.cached(iid) for iid in iids]
                return all(copy is not None and copy.version == 2 for copy in copies)

            while not decided():
                await asyncio.sleep(0.001)  # bounded by run()'s deadline
            assert not any(task.done() for task in fired)  # none is reported done before its commit
            holder.execute("ROLLBACK")
            holder.close()
            assert await asyncio.gather(*fired) == [None] * 50
            assert tracker.sync.conflicts_retried - conflicts_before == 1
            # The writer's first batch (taken before the rest was decided), the rest, and the conflict's retry alone.
            assert group.commits - commits_before <= 4
            for n, iid in enumerate(iids):
                expected = [1000, n + 1] if iid == stale else [n + 1]
                assert metric_values(await tracker.history(iid)) == expected

    run(main())


def test_a_task_cancelled_inside_track_phase_fails_the_iteration_and_is_re_raised(sqlite_store: str) -> None:
    """`task.cancel()` mid-phase: the phase's time is recorded, the iteration is `failed` with an error saying it
    was cancelled, and the task ends cancelled."""

    async def main() -> None:
        async with AsyncPerformanceTracker(sqlite_store, migrate=True) as tracker:
            iid = await tracker.start_iteration("agent-1", 1)
            inside = asyncio.Event()

            async def work() -> None:
                async with tracker.track_phase(iid, "scan_execution"):
                    inside.set()
                    await asyncio.Event().wait()  # a scan that never ends

            task = asyncio.create_task(work())
            await inside.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            state = await tracker.get_iteration(iid)
            assert state.status is Status.FAILED
            assert state.error == "cancelled: CancelledError"
            assert [entry.phase for entry in state.phase_history][-2:] == ["scan_execution", "failed"]
            assert "scan_execution_time_ms" in state.metrics

    run(main())


@pytest.mark.parametrize("how", ["asyncio.timeout", "asyncio.wait_for"])
def test_a_phase_timed_out_by_asyncio_fails_the_iteration_and_the_caller_gets_timeout_error(
    sqlite_store: str, how: str
) -> None:
    """`asyncio.timeout` / `asyncio.wait_for` around a phase that overruns: the caller gets `TimeoutError`, and the
    iteration is `failed` (cancelled) with the phase's time."""

    async def main() -> None:
        async with AsyncPerformanceTracker(sqlite_store, migrate=True) as tracker:
            iid = await tracker.start_iteration("agent-1", 1)

            async def work() -> None:
                async with tracker.track_phase(iid, "backtest_execution"):
                    await asyncio.Event().wait()

            async def timed() -> None:
                if how == "asyncio.timeout":
                    async with asyncio.timeout(0.05):
                        await work()
                else:
                    await asyncio.wait_for(work(), 0.05)

            with pytest.raises(TimeoutError):
                await timed()
            state = await tracker.get_iteration(iid)
            assert state.status is Status.FAILED
            assert state.error is not None
            assert state.error.startswith("cancelled: CancelledError")
            assert state.metrics["backtest_execution_time_ms"] > 0  # the time from entering the phase to the timeout

    run(main())


def test_the_loop_keeps_running_while_a_change_waits_for_the_store(tmp_path: Path) -> None:
    """Another process holds the SQLite file's write lock: the change waits for it on a worker thread while the
    loop goes on ticking, and lands once the lock is released."""
    path = tmp_path / "itertrack.db"
    store = f"sqlite:///{path}"

    async def main() -> None:
        async with AsyncPerformanceTracker(store, migrate=True) as tracker:
            iid = await tracker.start_iteration("agent-1", 1)
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            change = asyncio.create_task(tracker.update_metrics(iid, {"analysis_tokens": 5}))
            ticks = 0
            while ticks < 20:  # the loop runs other work while the change is blocked on the lock
                await asyncio.sleep(0.005)
                ticks += 1
                assert not change.done()
            holder.execute("ROLLBACK")
            holder.close()
            await change
            assert (await tracker.get_iteration(iid)).metrics == {"analysis_tokens": 5}

    run(main())


def test_closing_with_changes_in_flight_finishes_each_of_them(durable_store: str) -> None:
    """200 changes fired and `aclose()` at once: every call is settled (here all committed, the store being up),
    and the store holds exactly the ones reported done; later calls raise `StoreError`."""

    async def main() -> tuple[list[UUID], list[BaseException | None]]:
        tracker = await AsyncPerformanceTracker(durable_store, migrate=True).open()
        iids = [await tracker.start_iteration("agent-1", n) for n in range(20)]
        fired = [
            asyncio.create_task(tracker.update_metrics(iids[n % 20], {"analysis_tokens": n + 1})) for n in range(200)
        ]
        await asyncio.sleep(0)  # the tasks start (their calls are made) before the close
        await tracker.aclose()
        assert all(task.done() for task in fired)
        with pytest.raises(StoreError):
            await tracker.update_metrics(iids[0], {"analysis_tokens": 1})
        return iids, [task.exception() for task in fired]

    iids, outcomes = asyncio.run(asyncio.wait_for(main(), DEADLINE_S))
    assert outcomes == [None] * 200
    with PerformanceTracker(durable_store) as fresh:
        assert sum(len(metric_values(fresh.history(iid))) for iid in iids) == 200


def test_errors_are_the_sync_trackers(sqlite_store: str) -> None:
    """The same typed errors: a bad id at the call, a bad metric and an unknown iteration at the await."""

    async def main() -> None:
        async with AsyncPerformanceTracker(sqlite_store, migrate=True) as tracker:
            with pytest.raises(InvalidIterationIdError):
                await tracker.update_phase("not-a-uuid", "analysis")
            iid = await tracker.start_iteration("agent-1", 1)
            with pytest.raises(InvalidMetricError):
                await tracker.update_metrics(iid, {"analysis_tokens": -1})
            with pytest.raises(IterationNotFoundError):
                await tracker.update_phase(UUID(int=7), "analysis")
            assert (await tracker.get_iteration(iid)).metrics == {}

    run(main())


def test_llm_calls_are_recorded_as_by_the_sync_tracker(sqlite_store: str) -> None:
    """record_llm_call and record_usage as coroutines: the call events, unknown usage included, and the tokens."""

    async def main() -> None:
        async with AsyncPerformanceTracker(sqlite_store, migrate=True) as tracker:
            iid = await tracker.start_iteration("agent-1", 1)
            usage = await tracker.record_llm_call(
                iid, "analysis", model="claude-haiku-4-5", usage={"input_tokens": 3, "output_tokens": 4}, batch=True
            )
            assert usage is not None
            assert usage.total == 7
            assert await tracker.record_usage(iid, "analysis", None, model="claude-haiku-4-5") is None
            calls = [e for e in await tracker.history(iid) if isinstance(e, Iteration.LLMCallRecorded)]
            assert [(c.model, c.batch, c.usage_unknown) for c in calls] == [
                ("claude-haiku-4-5", True, False),
                ("claude-haiku-4-5", False, True),
            ]
            assert (await tracker.get_iteration(iid)).metrics["analysis_tokens"] == 7

    run(main())


@pytest.mark.postgres
def test_an_outage_while_200_tasks_write_loses_nothing_and_doubles_nothing(pg_store: str, proxy: TcpProxy) -> None:
    """PostgreSQL goes away while 200 tasks write (each its own iteration, 5 changes): the changes wait in the spool,
    the loop keeps ticking meanwhile, and afterwards each iteration holds its 5 changes once, in order."""

    async def main() -> list[UUID]:
        async with AsyncPerformanceTracker(through(pg_store, proxy), migrate=True) as tracker:
            iids = list(await asyncio.gather(*(tracker.start_iteration("agent-1", n) for n in range(200))))
            proxy.cut()
            ticks = 0
            stop = asyncio.Event()

            async def heartbeat() -> None:
                nonlocal ticks
                while not stop.is_set():
                    await asyncio.sleep(0.001)
                    ticks += 1

            beating = asyncio.create_task(heartbeat())

            async def host_task(iid: UUID) -> None:
                for k in range(1, 6):
                    await tracker.update_metrics(iid, {"analysis_tokens": k})

            await asyncio.gather(*(host_task(iid) for iid in iids))
            stop.set()
            await beating
            assert ticks > 0  # the loop ran while the writes met the outage
            proxy.start()
            writer = spooling_writer(tracker.sync)
            assert writer.spool is not None
            while writer.spool.count():
                await asyncio.sleep(0.05)  # bounded by run()'s deadline
            return iids

    iids = asyncio.run(asyncio.wait_for(main(), DEADLINE_S))
    with PerformanceTracker(pg_store) as fresh:
        for iid in iids:
            assert metric_values(fresh.history(iid)) == [1, 2, 3, 4, 5]
