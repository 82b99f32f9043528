"""`make drills`: outage, kill, contention (also under an outage), load, and `project --follow` through outages on
a real PostgreSQL, each with a verdict.

Usage: .venv/bin/python -m scripts.drills [outage|kill|contention|spooled-contention|load|follow-through-outage ...]
       [--postgres URL] [--seconds N]
The outage drill stops and starts the local PostgreSQL cluster (pg_ctlcluster; run as root, not in CI).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import view_for
from itertrack.domain import PerformanceTracker
from scripts.bench_support import pg_schema
from scripts.drill_follow import follow_through_outage
from scripts.drill_outage import outage
from scripts.drill_spooled_contention import spooled_contention
from scripts.drill_support import ITERTRACK, DrillFailedError, check, say, verified
from scripts.drill_workers import contender


def contention(store: str, seconds: float) -> None:
    """16 processes hammer 4 iterations: every change lands exactly once; conflicts queue, none gives up."""
    processes, changes = 16, 100
    with PerformanceTracker(store=store, migrate=True) as tracker:
        ids = [str(tracker.start_iteration("contended", n)) for n in range(4)]
        ctx = multiprocessing.get_context("spawn")
        ready, gate, results = ctx.Queue(), ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=contender, args=(store, ids, changes, ready, gate, results)) for _ in range(processes)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=120)
        started = time.monotonic()
        gate.set()
        reported = [results.get(timeout=600) for _ in procs]
        retries = [int(r[0]) for r in reported]
        give_ups = sum(int(r[1]) for r in reported)
        for p in procs:
            p.join(timeout=60)
            check(p.exitcode == 0, "contention", f"a writer exited with {p.exitcode}")
        took = time.monotonic() - started
        check(give_ups == 0, "contention", f"{give_ups} changes gave up with ConcurrencyError")
        expected = processes * changes // len(ids)
        for iid in ids:
            state = tracker.get_iteration(iid)
            versions = [e.originator_version for e in tracker.history(iid)]
            check(state.metrics.get("hammered") == expected, "contention", f"{iid} total {state.metrics} != {expected}")
            check(versions == list(range(1, expected + 2)), "contention", f"{iid} versions not 1..{expected + 1}")
        say("contention", f"{processes} processes x {changes} changes on {len(ids)} iterations in {took:.1f} s")
        say("contention", f"conflicts retried: {sum(retries):,} (per process {min(retries)}-{max(retries)})")
        say("contention", "no change gave up (a change that lost a race retried holding the store's write lock)")
        say("contention", f"every iteration holds exactly {expected} increments in versions 1..{expected + 1}")
        verified("contention", tracker)
    say("contention", f"nothing lost, nothing doubled: {processes * changes:,} changes checked")


def kill(store: str, seconds: float) -> None:
    """SIGKILL writer and projection processes at random moments; afterwards nothing is partial or doubled."""
    PerformanceTracker(store=store, migrate=True).close()
    rng = random.Random(7)
    spool = re.search(r"spool=([^&]+)", store)
    assert spool is not None
    journal = Path(spool.group(1)).with_name("kill.journal")
    writers = [subprocess.Popen([sys.executable, "-c", _flow_host_code(store, n, journal)]) for n in range(3)]
    projector = subprocess.Popen(
        [ITERTRACK, "project", "--follow", "--wait", "--store", store], stdout=subprocess.DEVNULL
    )
    # The killing starts once every writer is writing: on a busy machine starting one takes seconds.
    ready = [Path(f"{journal}.ready.{n}") for n in range(len(writers))]
    waited_until = time.monotonic() + 300
    while not all(r.exists() for r in ready):
        check(time.monotonic() < waited_until, "kill", "the writers were not writing after 300 s")
        time.sleep(0.05)  # the polling interval of a wait on a condition
    kills = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.3, 1.2))
        victim = rng.randrange(len(writers) + 1)
        if victim == len(writers):
            projector.send_signal(signal.SIGKILL)
            projector.wait()
            projector = subprocess.Popen(
                [ITERTRACK, "project", "--follow", "--wait", "--store", store], stdout=subprocess.DEVNULL
            )
        else:
            writers[victim].send_signal(signal.SIGKILL)
            writers[victim].wait()
            code = _flow_host_code(store, victim + 10 * kills, journal)
            writers[victim] = subprocess.Popen([sys.executable, "-c", code])
        kills += 1
    for proc in [*writers, projector]:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    say("kill", f"{kills} processes killed with SIGKILL over {seconds:.0f} s (3 writers, 1 projection)")
    with PerformanceTracker(store=store, migrate=False) as tracker:
        finished = [line.split() for line in journal.read_text().splitlines()]
        for iid, version in finished:
            stored = len(tracker.history(iid))
            check(stored == int(version), "kill", f"{iid}: the host saw version {version}, the store holds {stored}")
        say("kill", f"every one of {len(finished):,} iterations the hosts finished is stored as they saw it")
        report = verified("kill", tracker)
    say("kill", f"nothing lost, nothing doubled: {report.events:,} events checked")


def _flow_host_code(store: str, host: int, journal: Path) -> str:
    return f"from scripts.drill_workers import flow_host; flow_host({store!r}, {host}, {host}, {str(journal)!r})"


LOAD_RATE = 1000.0  # tracked changes per second; set by --rate (make bench found about 2,000-3,000/s)


def load(store: str, seconds: float) -> None:
    """A sustained run at a set rate, watching memory, connections and read-model lag; all must stay bounded."""
    # libpq names every connection this drill and its follower open, so that only those are counted,
    # not the connections of whatever else uses the same database meanwhile.
    os.environ["PGAPPNAME"] = f"itertrack-load-drill-{os.getpid()}"
    with PerformanceTracker(store=store, migrate=True) as tracker:
        projector = subprocess.Popen([ITERTRACK, "project", "--follow", "--store", store], stdout=subprocess.DEVNULL)
        view = view_for(store_of(tracker).factory)
        base = store.split("?", maxsplit=1)[0]
        rss, lags, conns = [], [], []
        changes = 0
        started = time.monotonic()
        next_sample = started
        iid = tracker.start_iteration("load", 0)  # iteration numbers: the change count at its start
        with psycopg.connect(base) as watch:
            while time.monotonic() - started < seconds:
                tracker.update_metrics(iid, {"load_tokens": 1})
                changes += 1
                ahead = changes / LOAD_RATE - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)  # hold the set rate
                if changes % 500 == 0:
                    # The saving step, then completed: as the host does.
                    tracker.save_iteration({"id": iid, "agent_id": "load", "iteration_number": changes - 500})
                    tracker.update_phase(iid, "completed")
                    iid = tracker.start_iteration("load", changes)
                if time.monotonic() >= next_sample:
                    next_sample += 1.0
                    rss.append(_rss_mib())
                    lags.append((store_of(tracker).recorder.max_notification_id() or 0) - view.position())
                    row = watch.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND application_name = current_setting('application_name')"
                    ).fetchone()
                    watch.commit()
                    conns.append(int(row[0]) if row else 0)
        projector.send_signal(signal.SIGTERM)
        projector.wait(timeout=60)
        took = time.monotonic() - started
        say("load", f"{changes:,} tracked changes in {took:.0f} s ({changes / took:,.0f}/s), sampled every second")
        half = len(rss) // 2
        say("load", f"memory: {rss[0]:.0f} -> {max(rss[:half] or rss):.0f} (first half max) -> {max(rss):.0f} MiB max")
        check(max(rss) - max(rss[:half] or rss) < 50, "load", "memory kept growing in the second half")
        say("load", f"database connections: max {max(conns)} (this drill's pool, the follower, the watcher)")
        check(max(conns) <= 40, "load", "connections grew past the pools' bounds")
        say("load", f"read-model lag: max {max(lags):,} events, last {lags[-1]:,}")
        check(max(lags) < 5_000, "load", "the read models fell behind")
        verified("load", tracker)
    say("load", f"nothing lost, nothing doubled: {changes:,} changes checked")


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


DRILLS: dict[str, Callable[[str, float], None]] = {
    "outage": outage,
    "kill": kill,
    "contention": contention,
    "spooled-contention": spooled_contention,
    "load": load,
    "follow-through-outage": follow_through_outage,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: which drills (all by default), against which PostgreSQL, for how long."""
    parser = argparse.ArgumentParser(description=__doc__)
    # No `choices=`: argparse checks a nargs="*" default list against them as one value and refuses it.
    parser.add_argument("drills", nargs="*", help=f"which to run (default: all of {', '.join(DRILLS)})")
    parser.add_argument("--postgres", default="postgresql://root@127.0.0.1:5432/test")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the kill, outage and load drills")
    parser.add_argument("--rate", type=float, default=LOAD_RATE, help="tracked changes per second in the load drill")
    args = parser.parse_args(argv)
    unknown = [name for name in args.drills if name not in DRILLS]
    if unknown:
        parser.error(f"unknown drill(s) {', '.join(unknown)}: choose from {', '.join(DRILLS)}")
    args.drills = args.drills or list(DRILLS)
    return args


def main() -> None:
    args = parse_args()
    globals()["LOAD_RATE"] = args.rate
    failed = []
    for name in args.drills:
        with tempfile.TemporaryDirectory() as tmp, pg_schema(args.postgres) as schema:
            store = f"{args.postgres}?schema={schema}&spool={Path(tmp) / 'spool.db'}"
            say(name, f"start ({DRILLS[name].__doc__})")
            try:
                DRILLS[name](store, args.seconds)
            except DrillFailedError as e:
                print(e, flush=True)
                failed.append(name)
    print("all drills passed" if not failed else f"drills failed: {', '.join(failed)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
