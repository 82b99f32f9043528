"""The contention-plus-outage drill: processes add to the same iterations while PostgreSQL is cut off for 2 s.

Each writer's changes go through a TCP proxy the drill cuts: changes made during the cut wait in a spool
with versions that the other writers then take. Afterwards every acknowledged change must be stored once:
acknowledged = stored, counted per iteration, with nothing stuck. Run twice: one spool file shared by all
writers, and a spool per writer.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from itertrack.adapters.bootstrap import spooling_writer
from itertrack.domain import PerformanceTracker
from scripts.drill_support import check, say, verified
from scripts.tcp_proxy import TcpProxy

PROCESSES, ITERATIONS = 4, 2
CUT_S = 2.0


def spooled_contention(store: str, seconds: float) -> None:
    """4 processes x 300 increments on 2 iterations through a proxy cut for 2 s: acknowledged = stored."""
    changes = 300 if seconds >= 30 else 40  # the smoke test's few seconds: 40 each
    for shared in (True, False):
        _round(store, changes, shared=shared)
    say("spooled-contention", f"nothing lost, nothing doubled: {2 * PROCESSES * changes:,} changes checked")


def _round(store: str, changes: int, *, shared: bool) -> None:
    name = "spooled-contention"
    how = "one shared spool file" if shared else "a spool per process"
    target = urlsplit(store)
    proxy = TcpProxy(target.port or 5432, target.hostname or "127.0.0.1")
    proxy.start()
    spool_dir = Path(store.split("spool=", 1)[1].split("&", 1)[0]).parent
    with PerformanceTracker(store=store, migrate=True) as tracker:
        ids = [str(tracker.start_iteration(f"spooled-contention-{int(shared)}", n)) for n in range(ITERATIONS)]
        before = {iid: tracker.get_iteration(iid).metrics.get("hammered", 0) for iid in ids}
        ctx = multiprocessing.get_context("spawn")
        ready, gate, results = ctx.Queue(), ctx.Event(), ctx.Queue()
        acked = ctx.Value("i", 0)
        stores = [
            _through(store, proxy.port, spool_dir / ("shared.db" if shared else f"writer-{n}.db"))
            for n in range(PROCESSES)
        ]
        procs = [
            ctx.Process(target=spooled_contender, args=(stores[n], ids, changes, ready, gate, results, acked))
            for n in range(PROCESSES)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=120)
        gate.set()
        until = time.monotonic() + 120
        while acked.value < PROCESSES * changes // 4 and time.monotonic() < until:
            time.sleep(0.01)
        proxy.cut()
        say(name, f"[{how}] PostgreSQL cut off after {acked.value} acknowledged changes")
        time.sleep(CUT_S)
        proxy.start()
        say(name, f"[{how}] back after {CUT_S:.0f} s, at {acked.value} acknowledged changes")
        reports = [results.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            check(p.exitcode == 0, name, f"a writer exited with {p.exitcode}")
        proxy.cut()
        errors = [e for r in reports for e in r["errors"]]
        check(not errors, name, f"{len(errors)} call(s) raised, first: {errors[:1]}")
        stuck = sum(r["stuck"] for r in reports)
        check(stuck == 0, name, f"{stuck} spooled change(s) stuck")
        for iid in ids:
            acknowledged = sum(r["acked"].get(iid, 0) for r in reports)
            stored = tracker.get_iteration(iid).metrics.get("hammered", 0) - before[iid]
            say(name, f"[{how}] iteration {iid[:8]}: acknowledged {acknowledged}, stored {stored}")
            if stored != acknowledged:
                _tell_doubles(name, tracker, iid)
            check(stored == acknowledged, name, f"{iid}: acknowledged {acknowledged} != stored {stored}")
        spooled = sum(r["spooled"] for r in reports)
        deferred = sum(r["deferred"] for r in reports)
        say(name, f"[{how}] {spooled} changes spooled as events, {deferred} as changes, all forwarded")
        verified(name, tracker)


def _tell_doubles(name: str, tracker: PerformanceTracker, iid: str) -> None:
    """Say which events of the iteration carry the same event id (a change stored twice)."""
    seen: dict[object, list[int]] = {}
    for event in tracker.history(iid):
        seen.setdefault(event.event_id, []).append(event.originator_version)
    for event_id, at in seen.items():
        if len(at) > 1:
            say(name, f"event {event_id} stored at versions {at}")


def _through(store: str, port: int, spool: Path) -> str:
    """The store reached through the proxy, with a short connect timeout and the given spool file."""
    parts = urlsplit(store)
    query = "&".join(q for q in parts.query.split("&") if not q.startswith("spool="))
    netloc = f"{parts.username}@127.0.0.1:{port}"
    return parts._replace(netloc=netloc, query=f"{query}&spool={spool}&connect_timeout=1").geturl()


def spooled_contender(  # noqa: PLR0917  # a Process target: multiprocessing passes args by position
    store: str, ids: list[str], changes: int, ready: Any, gate: Any, results: Any, acked: Any
) -> None:
    """Add 1 to `hammered` on the iterations in turn; report what was acknowledged once the spool drained."""
    counts = dict.fromkeys(ids, 0)
    errors: list[str] = []
    with PerformanceTracker(store=store, migrate=False) as tracker:
        ready.put(True)
        if not gate.wait(300):
            raise TimeoutError("the start gate never opened")
        for n in range(changes):
            iid = ids[n % len(ids)]
            try:
                tracker.update_metrics(iid, {"hammered": 1})
            except Exception as e:  # a drill reports every failure, of any kind
                errors.append(f"{type(e).__name__}: {e}")
                continue
            counts[iid] += 1
            with acked.get_lock():
                acked.value += 1
        writer = spooling_writer(tracker)
        until = time.monotonic() + 300
        while (writer.spool.count() or writer.state.unforwarded) and time.monotonic() < until:
            time.sleep(0.05)
        results.put(
            {
                "acked": counts,
                "errors": errors,
                "stuck": writer.spool.stuck_count(),
                "spooled": writer.changes_spooled,
                "deferred": writer.changes_deferred,
            }
        )
