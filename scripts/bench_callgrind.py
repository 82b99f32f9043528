"""Instruction counts of the write path (issue 18): what one tracked change costs the process in CPU instructions,
counted by valgrind's callgrind, beside the floor (one raw sqlite3 autocommit insert of the same row).

Wall time on a shared machine swings with its load; instruction counts do not: the same program gives the same
count (PYTHONHASHSEED=0, fixed ids and a fixed clock), so the effect of a change to the write path shows even
when timings drown it. Only the process's own user-space instructions count: not the kernel's (write, fsync),
not time spent waiting, not a database server's (hence no PostgreSQL row here).

How: one Python process runs under `valgrind --tool=callgrind --instr-atstart=no`, so that the interpreter's
start-up, the imports and the stores' set-up run uninstrumented (and are not counted). The process then
switches instrumentation on itself with callgrind's client requests (the magic instruction sequence of
valgrind.h, called through ctypes from a page of machine code; a no-op when not under valgrind) and measures
regions: each zeroes the counters, makes `n` calls and dumps the counts to a file of its own. The garbage
collector is reset before each region (start-up objects frozen, counts zeroed): its work inside a region is
that of the region's own allocations, the same from run to run. A region of `n`
calls of an empty function (the same loop with 0 changes) is subtracted from each, then divided by `n`.
Before the regions, each case has made `warm` calls uncounted (caches, prepared statements, lazy imports).

Usage: .venv/bin/python -m scripts.bench_callgrind [--quick]   (prints the rows)
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import mmap
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from itertrack.adapters.aio import AsyncPerformanceTracker
from itertrack.adapters.demo.fakes import SimulatedClock
from itertrack.domain import PerformanceTracker
from scripts.bench_async import CHANGES_PER_ITERATION, idle_iteration, one_iteration
from scripts.bench_support import Row, SQLiteFloor

ROOT = Path(__file__).resolve().parents[1]
VALGRIND = "valgrind"
# Cases measured in the child, in order; each dumps one file (callgrind numbers dumps 1, 2, ...). The sync cases
# make `n` calls each; the async ones run `ASYNC_ITERATIONS` iterations side by side on one event loop, tracked
# (`async`) or awaiting as often with no tracking (`async_idle`, subtracted from `async`).
CASES = ("empty", "memory", "sqlite", "floor", "async_idle", "async")
ASYNC_ITERATIONS = 200
# x86-64: rax = &args[0], rdx = default result; the special preamble (rotations of rdi by 3, 13, 61 and 51
# bits: 128 in all, rdi unchanged) and `xchg rbx, rbx` that valgrind recognises; returns rdx.
_CLIENT_REQUEST_X86_64 = bytes.fromhex(
    "4889f8"  # mov rax, rdi
    "31d2"  # xor edx, edx
    "48c1c703"
    "48c1c70d"
    "48c1c73d"
    "48c1c733"  # rol rdi, 3 / 13 / 61 / 51
    "4887db"  # xchg rbx, rbx
    "4889d0"  # mov rax, rdx
    "c3"  # ret
)
_CALLGRIND_BASE = (ord("C") << 24) | (ord("T") << 16)  # VG_USERREQ_TOOL_BASE('C', 'T')
DUMP_STATS, ZERO_STATS = _CALLGRIND_BASE, _CALLGRIND_BASE + 1
START_INSTRUMENTATION, STOP_INSTRUMENTATION = _CALLGRIND_BASE + 4, _CALLGRIND_BASE + 5
RUNNING_ON_VALGRIND = 0x1001


class ClientRequests:
    """Valgrind client requests from Python (x86-64 only): `request(code)` returns valgrind's answer, 0 when
    the process does not run under valgrind."""

    def __init__(self) -> None:
        self._page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._page.write(_CLIENT_REQUEST_X86_64)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        self._call = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)(address)
        self._args = (ctypes.c_uint64 * 6)()
        self._args_address = ctypes.addressof(self._args)

    def request(self, code: int) -> int:
        self._args[0] = code
        return int(self._call(self._args_address))


def _tracker(store: str, start: datetime) -> PerformanceTracker:
    """A tracker with a fixed clock and ids counted from 1 (deterministic events)."""
    counter = iter(range(1, 1 << 62))
    clock = SimulatedClock(start=start, new_id=lambda: uuid.UUID(int=next(counter)))
    return PerformanceTracker(store=store, migrate=True, clock=clock)


def _changer(tracker: PerformanceTracker, number: int) -> Callable[[], None]:
    """`update_metrics` of the same metric on one running iteration with a fixed id."""
    iid = tracker.start_iteration("callgrind", number, iteration_id=uuid.UUID(int=number))
    update = tracker.update_metrics
    return lambda: update(iid, {"backtest_execution_time_ms": 1520})


def _floor(path: Path) -> Callable[[], None]:
    """The floor: one raw sqlite3 autocommit INSERT of the row of one change (`bench_support.SQLiteFloor`)."""
    floor = SQLiteFloor(path)
    floor.oid = uuid.UUID(int=99).hex  # fixed, as the trackers' ids
    return floor.insert


def _async_regions(
    folder: Path, start: datetime, warm: int, iterations: int
) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None]]:
    """The async cases: (tracked region, untracked region, close), set up and warmed with `warm` iterations.

    A region runs `iterations` iterations side by side on one event loop (`bench_async.one_iteration`, 10
    changes each, awaited one by one; or `idle_iteration`, as many bare awaits), on a SQLite file through
    `AsyncPerformanceTracker` over a tracker with a fixed clock and counted ids. Its writer thread runs too:
    callgrind counts every thread's instructions."""
    loop = asyncio.new_event_loop()
    sync = _tracker(f"sqlite:///{folder / 'async.db'}", start)
    tracker = AsyncPerformanceTracker(tracker=sync)
    loop.run_until_complete(tracker.open())
    numbers = iter(range(1, 1 << 62))

    def region(body: Callable[[AsyncPerformanceTracker, str, int], Awaitable[None]], count: int) -> None:
        async def side_by_side() -> None:
            await asyncio.gather(*(body(tracker, "callgrind-async", next(numbers)) for _ in range(count)))

        loop.run_until_complete(side_by_side())

    def close() -> None:
        loop.run_until_complete(tracker.aclose())
        loop.close()

    region(one_iteration, warm)
    region(idle_iteration, warm)
    return (lambda: region(one_iteration, iterations)), (lambda: region(idle_iteration, iterations)), close


def child(folder: Path, n: int, warm: int, iterations: int) -> None:
    """Under callgrind: set up every case uncounted, then one counted region per case (`CASES`): `n` calls of
    each sync case, `iterations` iterations of each async one. The async tracker (its event loop, its writer
    and worker threads) is set up only after the sync regions are counted: set up before, it made their counts
    vary by hundreds of instructions from run to run instead of a few."""
    requests = ClientRequests()
    start = datetime(2026, 11, 25, tzinfo=UTC)
    memory = _tracker("memory://", start)
    sqlite_file = _tracker(f"sqlite:///{folder / 'tracked.db'}", start)
    calls = {
        "empty": lambda: None,
        "memory": _changer(memory, 1),
        "sqlite": _changer(sqlite_file, 2),
        "floor": _floor(folder / "floor.db"),
    }
    for call in calls.values():
        for _ in range(warm):
            call()

    def calls_of(call: Callable[[], None]) -> Callable[[], None]:
        def region() -> None:
            for _ in range(n):
                call()

        return region

    _count_regions(requests, {case: calls_of(call) for case, call in calls.items()})
    tracked, untracked, close_async = _async_regions(folder, start, warm, iterations)
    _count_regions(requests, {"async_idle": untracked, "async": tracked})
    close_async()
    sys.stdout.flush()
    os._exit(0)  # no interpreter shutdown: nothing more to count, and faster under valgrind


def _count_regions(requests: ClientRequests, regions: dict[str, Callable[[], None]]) -> None:
    """Count each region (in `CASES` order) into a dump of its own."""
    # The collector starts every region in the same state, whatever the start-up allocated (pyc files or
    # sources, environment): the objects so far are frozen out of its generations, its counts reset.
    gc.collect()
    gc.freeze()
    requests.request(START_INSTRUMENTATION)
    for case in (case for case in CASES if case in regions):
        gc.collect()
        requests.request(ZERO_STATS)
        regions[case]()
        requests.request(DUMP_STATS)
    requests.request(STOP_INSTRUMENTATION)


def _instructions(dump: Path) -> int:
    """The instruction count (Ir) of one callgrind dump."""
    match = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.MULTILINE)
    if match is None:
        msg = f"no instruction count in {dump}"
        raise RuntimeError(msg)
    return int(match.group(1))


def count(n: int, warm: int, iterations: int) -> tuple[dict[str, float], float]:
    """Instructions per call of each sync case but `empty` (whose count per call is subtracted), per change of
    `async` (less `async_idle`), and wall seconds.

    Raises `RuntimeError` when valgrind fails or writes fewer dumps than cases."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out = folder / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        started = time.perf_counter()
        result = subprocess.run(  # our own interpreter and arguments
            [
                VALGRIND,
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "scripts.bench_callgrind",
                "--child",
                str(folder),
                str(n),
                str(warm),
                str(iterations),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        seconds = time.perf_counter() - started
        dumps = [Path(f"{out}.{k}") for k in range(1, len(CASES) + 1)]
        if result.returncode != 0 or not all(d.exists() for d in dumps):
            msg = f"callgrind run failed ({result.returncode}): {result.stderr[-2000:]}"
            raise RuntimeError(msg)
        totals = dict(zip(CASES, (_instructions(d) for d in dumps), strict=True))
    empty = totals["empty"]
    per_call = {case: (totals[case] - empty) / n for case in ("memory", "sqlite", "floor")}
    per_call["async"] = (totals["async"] - totals["async_idle"]) / (iterations * CHANGES_PER_ITERATION)
    return per_call, seconds


def callgrind_rows(quick: bool) -> list[Row]:
    """Rows: instructions per tracked change on the memory store and on a SQLite file, against the floor's
    instructions per raw autocommit insert. Not measured (a row saying why) without valgrind or off x86-64."""
    labels = {"memory": "memory store", "sqlite": "SQLite file"}
    paths = [f"instructions per tracked change (update_metrics), {label}" for label in labels.values()]
    async_path = "instructions per change, async tracker ({} concurrent iterations, all threads), SQLite file"
    missing = None
    if shutil.which(VALGRIND) is None:
        missing = "not measured: valgrind not found (make bench installs it)"
    elif platform.machine() not in {"x86_64", "AMD64"}:
        missing = f"not measured: the client requests are x86-64 code, this is {platform.machine()}"
    n, warm, iterations = (20, 10, 20) if quick else (100, 30, ASYNC_ITERATIONS)
    paths.append(async_path.format(iterations))
    if missing is not None:
        return [Row(path=p, measured=missing, floor="", ratio=None, target="none", met=None) for p in paths]
    per_call, seconds = count(n, warm, iterations)
    floor = per_call["floor"]
    rows = [
        Row(
            path=path,
            measured=f"{per_call[case]:,.0f} instructions",
            floor=f"{floor:,.0f} instructions per raw sqlite3 autocommit insert of the same row",
            ratio=round(per_call[case] / floor, 2),
            target="none: deterministic, compares a change's effect",
            met=None,
            note=(
                f"callgrind, user-space instructions of the process (no kernel, no I/O wait); {n} changes after "
                f"{warm} uncounted, minus the same loop with 0 changes; {seconds:.0f} s under valgrind"
            ),
        )
        for path, case in zip(paths[:2], labels, strict=True)
    ]
    rows.append(
        Row(
            path=paths[-1],
            measured=f"{per_call['async']:,.0f} instructions",
            floor=f"{floor:,.0f} instructions per raw sqlite3 autocommit insert of the same row",
            ratio=round(per_call["async"] / floor, 2),
            target="none: deterministic within about 1% (the writer thread's batches follow valgrind's scheduling)",
            met=None,
            note=(
                f"callgrind, every thread's user-space instructions; {iterations} iterations side by side (10 "
                f"changes each) after {warm} uncounted, minus the same iterations awaiting with no tracking"
            ),
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer changes (a smoke run)")
    parser.add_argument("--child", nargs=4, metavar=("FOLDER", "N", "WARM", "ITERATIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), int(args.child[1]), int(args.child[2]), int(args.child[3]))
        return
    for row in callgrind_rows(args.quick):
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}x "
        print(f"{row.path}\n    {row.measured}  |  floor: {row.floor}  |  {ratio}({row.note})")


if __name__ == "__main__":
    main()
