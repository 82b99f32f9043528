"""The asyncio example host (scripts/async_host.py) runs the learning flow on one event loop, and the async flow
fails an iteration whose task is cancelled between phases (issue 13)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from itertrack.adapters.aio import AsyncLearningIterationService, AsyncPerformanceTracker
from itertrack.adapters.demo.async_fakes import AsyncFakes
from itertrack.adapters.views.keeper import ReadModels
from itertrack.domain import IterationNotFoundError, PerformanceTracker, Status

ROOT = Path(__file__).resolve().parents[2]


def test_the_async_host_tracks_every_iteration_of_its_agents(tmp_path: Path) -> None:
    """6 agents x 4 iterations side by side: the store holds 24 iterations, each finished, as many failed as it says,
    and every completed one saved."""
    store = f"sqlite:///{tmp_path / 'async.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "scripts.async_host", "--store", store, "--agents", "6", "--iterations", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    said = re.search(r"24 iterations of 6 agents tracked in [0-9.]+ s: (\d+) completed, (\d+) failed", result.stdout)
    assert said is not None, result.stdout
    completed, failed = int(said.group(1)), int(said.group(2))
    with PerformanceTracker(store) as tracker, ReadModels(tracker, background=False) as views:
        rows = views.iterations(limit=100)
        assert len(rows) == 24
        assert sum(r.status is Status.COMPLETED for r in rows) == completed
        assert sum(r.status is Status.FAILED for r in rows) == failed
        assert all(tracker.get_iteration(r.id).saved for r in rows if r.status is Status.COMPLETED)


def test_the_async_flow_fails_an_iteration_cancelled_between_phases(sqlite_store: str) -> None:
    """Cancelled while the saving step or a phase runs, the iteration ends `failed` ("cancelled: ...")."""

    async def main() -> None:
        async with AsyncPerformanceTracker(sqlite_store, migrate=True) as tracker:
            fakes = AsyncFakes(time_scale=0.01)  # a 15 s backtest takes 150 ms
            service = AsyncLearningIterationService(tracker, fakes, fakes, fakes)
            iid = tracker.sync.clock.new_id()
            task = asyncio.create_task(service.run_iteration("agent-1", 1, iteration_id=iid))
            while True:  # until the iteration has reached the backtest (bounded by wait_for below)
                await asyncio.sleep(0.01)
                try:
                    if (await tracker.get_iteration(iid)).phase == "backtest_execution":
                        break
                except IterationNotFoundError:  # not started yet
                    continue
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            state = await tracker.get_iteration(iid)
            assert state.status is Status.FAILED
            assert state.error == "cancelled: CancelledError"

    asyncio.run(asyncio.wait_for(main(), 60))
