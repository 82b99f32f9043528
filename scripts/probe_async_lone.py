"""Where a lone change's time goes: the async tracker's stages beside the sync tracker's (README "Performance",
the async tracker's lone-change row).

One iteration, nothing else running: each change is awaited before the next is made. The probe wraps a few
methods of the dispatcher, the inbox and the group commit with clock stamps (the wrappers add about a
microsecond each) and prints, per round, the median time since the call was made at which each stage was
reached (a stage named for an end, "decided" or "settled", is stamped when the method doing it returns):

    async: decided (handed to the writer) -> writer has it -> commit starts -> commit ends -> settled
           -> loop drains the outcome -> caller resumed
    sync:  commit starts -> commit ends -> caller resumed

The two hand-offs between threads are "decided -> writer has it" and "settled -> loop drains"; the commit is
the store's own work, the same call on both paths. A change that missed a stage (decided in a later pass of
the loop, or run on a worker thread) is left out of the medians and counted.

Usage: .venv/bin/python -m scripts.probe_async_lone [--store URL] [--changes 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from itertrack.adapters.aio import AsyncPerformanceTracker
from itertrack.adapters.aio.dispatch import Dispatcher
from itertrack.adapters.aio.inbox import LoopInbox
from itertrack.adapters.store.group_commit import GroupCommit
from itertrack.domain import PerformanceTracker

ASYNC_STAGES = ("decided", "writer has it", "commit starts", "commit ends", "settled", "loop drains", "resumed")
SYNC_STAGES = ("commit starts", "commit ends", "resumed")

stamps: dict[str, int] = {}


def _stamped(cls: type, name: str, before: str | None, after: str | None) -> None:
    """Wrap `cls.name` so that it stamps `before` on entry and `after` on return (perf_counter_ns)."""
    inner: Callable[..., Any] = getattr(cls, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            stamps[before] = time.perf_counter_ns()
        result = inner(*args, **kwargs)
        if after is not None:
            stamps[after] = time.perf_counter_ns()
        return result

    setattr(cls, name, wrapper)


def install() -> None:
    _stamped(Dispatcher, "_decide", None, "decided")
    _stamped(Dispatcher, "_next_batch", None, "writer has it")
    _stamped(GroupCommit, "_commit_alone", "commit starts", "commit ends")
    _stamped(Dispatcher, "_write", None, "settled")
    _stamped(LoopInbox, "_drain", "loop drains", None)


def medians(rows: list[dict[str, int]], start: list[int], stages: tuple[str, ...]) -> str:
    """Per stage, the median us from the call to the stage, over the changes that passed every stage."""
    whole = [(row, s) for row, s in zip(rows, start, strict=True) if all(stage in row for stage in stages)]
    if not whole:
        return f"no change passed every stage (of {len(rows)})"
    figures = "  ".join(
        f"{stage} {statistics.median(row[stage] - s for row, s in whole) / 1000:.1f}" for stage in stages
    )
    missed = len(rows) - len(whole)
    return figures + (f"  ({missed} of {len(rows)} changes missed a stage: left out)" if missed else "")


async def probe(store: str, changes: int, rounds: int) -> None:
    with PerformanceTracker(store, migrate=True) as sync:
        async with AsyncPerformanceTracker(tracker=sync) as tracker:
            for n in range(rounds):
                iid = sync.start_iteration("probe", n)
                rows, starts = [], []
                for _ in range(changes):
                    stamps.clear()
                    started = time.perf_counter_ns()
                    sync.update_metrics(iid, {"analysis_tokens": 1})
                    rows.append({**stamps, "resumed": time.perf_counter_ns()})
                    starts.append(started)
                print(f"round {n + 1}  sync  us since the call: {medians(rows, starts, SYNC_STAGES)}")
                iid = await tracker.start_iteration("probe", n)
                rows, starts = [], []
                for _ in range(changes):
                    stamps.clear()
                    started = time.perf_counter_ns()
                    await tracker.update_metrics(iid, {"analysis_tokens": 1})
                    rows.append({**stamps, "resumed": time.perf_counter_ns()})
                    starts.append(started)
                print(f"round {n + 1}  async us since the call: {medians(rows, starts, ASYNC_STAGES)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="a store URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--changes", type=int, default=300, help="changes per round and tracker")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    install()
    with tempfile.TemporaryDirectory() as folder:
        store = args.store or f"sqlite:///{Path(folder) / 'probe.db'}"
        asyncio.run(probe(store, args.changes, args.rounds))


if __name__ == "__main__":
    main()
