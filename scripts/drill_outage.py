"""The outage drill: PostgreSQL stopped and started while a host works and a host restarts again and again."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from itertrack.adapters.bootstrap import spooling_writer
from itertrack.adapters.demo.fakes import FakeBacktester, FakeLLM, FakeScanner, Scenario, SimulatedClock, SimulatedError
from itertrack.domain import IterationState, PerformanceTracker, SystemClock
from itertrack.domain.service.learning_flow import LearningIterationService
from scripts.drill_support import check, say, verified


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
            say(
                "outage",
                f"starting PostgreSQL; {spooling_writer(host).spool.count()} change(s) spooled",
            )
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
        if drained is None and (spooling_writer(host).spool.count() == 0):
            drained = elapsed
        time.sleep(0.05)
    return drained


def _drain(host: PerformanceTracker) -> float:
    """Wait (up to 2 minutes) for the spool to drain; how long it took."""
    started = time.monotonic()
    while (
        spooling_writer(host).spool is not None
        and spooling_writer(host).spool.count()
        and time.monotonic() - started < 120
    ):
        time.sleep(0.05)
    check(
        spooling_writer(host).spool.count() == 0,
        "outage",
        "the spool did not drain",
    )
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
            while (
                spooling_writer(last).spool is not None
                and spooling_writer(last).spool.count()
                and time.monotonic() < deadline
            ):
                time.sleep(0.2)
            check(
                spooling_writer(last).spool.count() == 0,
                "outage",
                "the restarting host's spool did not drain",
            )
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
