"""`make drills`: outage, kill, contention and load against a real PostgreSQL, each ending in a verdict.

Usage: .venv/bin/python -m scripts.drills [outage|kill|contention|load ...] [--postgres URL] [--seconds N]
The outage drill stops and starts the local PostgreSQL cluster (pg_ctlcluster; run as root, not in CI).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from itertrack.adapters.demo.fakes import FakeBacktester, FakeLLM, FakeScanner, Scenario, SimulatedClock, SimulatedError
from itertrack.adapters.views.keeper import CatchUp, view_for
from itertrack.adapters.views.verify import verify_store
from itertrack.domain import IterationState, PerformanceTracker, SystemClock
from itertrack.domain.service.learning_flow import LearningIterationService
from itertrack.projections.verification import VerifyReport
from scripts.bench_support import pg_schema
from scripts.drill_workers import contender

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


class DrillFailedError(AssertionError):
    """A drill found something lost, doubled or partial."""


def say(drill: str, message: str) -> None:
    print(f"[{drill}] {message}", flush=True)


def check(condition: bool, drill: str, message: str) -> None:
    if not condition:
        raise DrillFailedError(f"[{drill}] FAILED: {message}")


def verified(drill: str, tracker: PerformanceTracker) -> VerifyReport:
    """Catch the read models up, then verify versions, records and every read-model row."""
    CatchUp(tracker, view_for(tracker.factory), 500).run()
    report = verify_store(tracker)
    for problem in report.problems[:10]:
        say(drill, f"problem: {problem.check} {problem.iteration_id}: {problem.detail}")
    check(report.ok, drill, f"verify found {len(report.problems)} problem(s)")
    say(
        drill,
        f"verify: {report.events:,} events of {report.iterations:,} iterations gapless, in time order and with "
        "unique event ids, "
        f"{report.records:,} records under their iteration ids, {report.read_model_rows:,} read-model rows "
        "equal to a fresh fold",
    )
    return report


def contention(store: str, seconds: float) -> None:
    """16 processes hammer 4 iterations: every change lands exactly once; conflicts are retried."""
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
        retries = [results.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            check(p.exitcode == 0, "contention", f"a writer exited with {p.exitcode}")
        took = time.monotonic() - started
        expected = processes * changes // len(ids)
        for iid in ids:
            state = tracker.get_iteration(iid)
            versions = [e.originator_version for e in tracker.history(iid)]
            check(state.metrics.get("hammered") == expected, "contention", f"{iid} total {state.metrics} != {expected}")
            check(versions == list(range(1, expected + 2)), "contention", f"{iid} versions not 1..{expected + 1}")
        say("contention", f"{processes} processes x {changes} changes on {len(ids)} iterations in {took:.1f} s")
        say("contention", f"conflicts retried: {sum(retries):,} (per process {min(retries)}-{max(retries)})")
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


def outage(store: str, seconds: float) -> None:
    """Run the learning flow while PostgreSQL is stopped and restarted; afterwards all of it is there."""
    cluster = _cluster()
    system = SystemClock()
    clock = SimulatedClock(start=system.now(), new_id=system.new_id)
    scenario = Scenario(clock, seed=3, failure_rate=0.1)
    with PerformanceTracker(store=store, migrate=True, clock=clock) as host:
        service = LearningIterationService(host, FakeLLM(scenario), FakeScanner(scenario), FakeBacktester(scenario))
        ids: list[uuid.UUID] = []
        stop = threading.Event()
        slowest = [0.0]

        def run() -> None:
            n = 0
            while not stop.is_set():
                iid = uuid.uuid4()
                ids.append(iid)
                started = time.monotonic()
                with contextlib.suppress(SimulatedError):  # a planned failure; the flow marked it failed
                    service.run_iteration("outage-host", n, iteration_id=iid)
                slowest[0] = max(slowest[0], time.monotonic() - started)
                n += 1
                time.sleep(0.01)

        worker = threading.Thread(target=run)
        worker.start()
        restarting = _RestartingHost(store, host)
        restarting.start()
        outages = 3
        for k in range(outages):
            drained = _up_for(host, seconds / (2 * outages))
            if k:
                say(
                    "outage",
                    "spool not drained before the next outage"
                    if drained is None
                    else f"spool drained {drained:.1f} s after PostgreSQL was back",
                )
            say("outage", f"stopping PostgreSQL ({k + 1}/{outages})")
            _pg_ctl(cluster, "stop")
            time.sleep(seconds / (2 * outages))
            say("outage", f"starting PostgreSQL; {host.spool.count() if host.spool else 0} change(s) spooled")
            _pg_ctl(cluster, "start")
        drained = _up_for(host, 2.0)
        stop.set()
        worker.join(timeout=120)
        restarting.finish()
        drained = drained if drained is not None else _drain(host)
        say("outage", f"after the last outage the spool drained {drained:.1f} s after PostgreSQL was back")
        say("outage", f"{len(ids)} iterations run across {outages} outages; slowest iteration {slowest[0]:.2f} s")
        reported = {iid: host.get_iteration(iid) for iid in ids}
    with PerformanceTracker(store=store, migrate=False) as fresh:
        _check_reported(fresh, reported)
        restarting.check(fresh)
        verified("outage", fresh)
    events = sum(s.version for s in reported.values()) + restarting.events
    say("outage", f"nothing lost, nothing doubled: {events:,} events checked")


def _up_for(host: PerformanceTracker, span: float) -> float | None:
    """Wait `span` seconds with the store up; how long the spool took to drain (None: it did not)."""
    started = time.monotonic()
    drained = None
    while (elapsed := time.monotonic() - started) < span:
        if drained is None and (host.spool is None or host.spool.count() == 0):
            drained = elapsed
        time.sleep(0.05)
    return drained


def _drain(host: PerformanceTracker) -> float:
    """Wait (up to 2 minutes) for the spool to drain; how long it took."""
    started = time.monotonic()
    while host.spool is not None and host.spool.count() and time.monotonic() - started < 120:
        time.sleep(0.05)
    check(host.spool is None or host.spool.count() == 0, "outage", "the spool did not drain")
    return time.monotonic() - started


def _check_reported(fresh: PerformanceTracker, reported: dict[uuid.UUID, IterationState]) -> None:
    """Every iteration in the store is gapless and equals the state the host saw."""
    for iid, state in reported.items():
        stored = fresh.get_iteration(iid)
        versions = [e.originator_version for e in fresh.history(iid)]
        check(versions == list(range(1, state.version + 1)), "outage", f"{iid}: versions {versions}")
        same = (stored.phase, stored.metrics, stored.version, stored.saved)
        check(same == (state.phase, state.metrics, state.version, state.saved), "outage", f"{iid} differs")
    say("outage", f"every one of {len(reported)} iterations in the store equals what the host reported")


class _RestartingHost(threading.Thread):
    """A second host, a process restarted again and again (half its lives end in SIGKILL), with its own spool.

    Each life has never loaded the long-running iterations it changes, so during an outage it cannot know
    their versions: its changes wait in the spool as deferred changes, and a later life forwards what an
    earlier one left, including forwards a SIGKILL cut between the store's commit and the spool's delete.
    """

    def __init__(self, store: str, setup: PerformanceTracker) -> None:
        super().__init__(name="restarting-host")
        spool = re.search(r"spool=([^&]+)", store)
        assert spool is not None
        folder = Path(spool.group(1)).parent
        self.store = store.replace(spool.group(0), f"spool={folder / 'spool-restarting.db'}")
        self.journal = folder / "restarting-host.journal"
        self.errors = folder / "restarting-host.err"
        self.open_ids = [setup.start_iteration("restarting-host", n) for n in range(8)]
        for iid in self.open_ids:
            setup.update_phase(iid, "analysis")
        self.lives = self.kills = self.events = 0
        self.stop = threading.Event()
        self.failures: list[str] = []

    def run(self) -> None:
        rng = random.Random(5)
        ids = [str(i) for i in self.open_ids]
        with self.errors.open("ab") as errors:
            while not self.stop.is_set():
                self.lives += 1
                code = (
                    "from scripts.drill_workers import restarting_host; "
                    f"restarting_host({self.store!r}, {ids!r}, {str(self.journal)!r}, {rng.uniform(0.5, 2.0)}, "
                    f"{self.lives})"
                )
                life = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=errors)
                if rng.random() < 0.5:  # a SIGKILL while it works (it starts in about a second, more when offline)
                    self.stop.wait(rng.uniform(1.5, 4.0))
                    if life.poll() is None:
                        life.send_signal(signal.SIGKILL)
                        self.kills += 1
                code_ = life.wait(timeout=120)
                if code_ not in (0, -signal.SIGKILL):
                    self.failures.append(f"life {self.lives} exited with {code_}")

    def finish(self) -> None:
        """Stop restarting; one last tracker forwards whatever the last lives left in the spool."""
        self.stop.set()
        self.join(timeout=180)
        tail = self.errors.read_text(errors="replace").strip().splitlines()[-5:]
        check(not self.failures, "outage", f"the restarting host failed: {self.failures[:3]} {tail}")
        with PerformanceTracker(store=self.store, migrate=False) as last:
            deadline = time.monotonic() + 120
            while last.spool is not None and last.spool.count() and time.monotonic() < deadline:
                time.sleep(0.2)
            check(last.spool is None or last.spool.count() == 0, "outage", "the restarting host's spool did not drain")
            for n, iid in enumerate(self.open_ids):  # as the host ends an iteration: the saving step, then completed
                last.save_iteration({"id": iid, "agent_id": "restarting-host", "iteration_number": n})
                last.update_phase(iid, "completed")

    def check(self, fresh: PerformanceTracker) -> None:
        """Each long-running iteration holds every acknowledged increment, at most the attempted ones, gapless."""
        tried = dict.fromkeys(self.open_ids, 0)
        acked = dict.fromkeys(self.open_ids, 0)
        offline = spooled = deferred = 0
        for line in self.journal.read_text().splitlines():
            kind, *rest = line.split()
            if kind == "try":
                tried[uuid.UUID(rest[0])] += 1
            elif kind == "ok":
                acked[uuid.UUID(rest[0])] += 1
            elif kind == "life":
                offline += int(rest[0])
            elif kind == "end":
                spooled, deferred = spooled + int(rest[0]), deferred + int(rest[1])
        landed_unacked = 0
        for iid in self.open_ids:
            state = fresh.get_iteration(iid)
            versions = [e.originator_version for e in fresh.history(iid)]
            check(versions == list(range(1, state.version + 1)), "outage", f"{iid}: versions {versions}")
            got = int(state.metrics.get("analysis_tokens", 0))
            check(acked[iid] <= got <= tried[iid], "outage", f"{iid}: {got} stored, {acked[iid]}-{tried[iid]} made")
            check(state.version == got + 4, "outage", f"{iid}: {state.version} events for {got} increments")
            landed_unacked += got - acked[iid]
            self.events += state.version
        cut = sum(tried.values()) - sum(acked.values())
        say(
            "outage",
            f"restarting host: {self.lives} lives ({self.kills} SIGKILLed, {offline} started while PostgreSQL was "
            f"down); {sum(acked.values()):,} acknowledged changes, all stored once; {cut} "
            f"calls cut by a kill, {landed_unacked} of them stored (durable before the kill); {spooled:,} changes "
            f"spooled as events and {deferred:,} deferred by the lives that ended normally",
        )


def _cluster() -> tuple[str, str]:
    versions = sorted(os.listdir("/etc/postgresql"))
    return versions[-1], "main"


def _pg_ctl(cluster: tuple[str, str], action: str) -> None:
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            cluster[0],
            cluster[1],
            action,
            *(["-m", "fast"] if action == "stop" else []),
        ],
        check=True,
        capture_output=True,
    )


LOAD_RATE = 1000.0  # tracked changes per second; set by --rate (make bench found about 2,000-3,000/s)


def load(store: str, seconds: float) -> None:
    """A sustained run at a set rate, watching memory, connections and read-model lag; all must stay bounded."""
    import psycopg  # noqa: PLC0415

    # libpq names every connection this drill and its follower open, so that only those are counted,
    # not the connections of whatever else uses the same database meanwhile.
    os.environ["PGAPPNAME"] = f"itertrack-load-drill-{os.getpid()}"
    with PerformanceTracker(store=store, migrate=True) as tracker:
        projector = subprocess.Popen([ITERTRACK, "project", "--follow", "--store", store], stdout=subprocess.DEVNULL)
        view = view_for(tracker.factory)
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
                    lags.append((tracker.recorder.max_notification_id() or 0) - view.position())
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
    "load": load,
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
