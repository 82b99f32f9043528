"""PostgreSQL outage helpers for the spool tests: a TCP proxy fixture, store URLs through it, waiting and flushing."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import psycopg
from support import TcpProxy, wait_for

from itertrack.adapters.bootstrap import spooling_writer, store_of
from itertrack.adapters.spool.state import SpoolFlush
from itertrack.adapters.store.postgres import PostgresRecorder
from itertrack.domain import (
    PerformanceTracker,
    StoreUnavailableError,
)

Open = Callable[..., PerformanceTracker]
ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


def through(store: str, proxy: TcpProxy) -> str:
    """The same store reached through the proxy, with a short connect timeout."""
    parts = urlsplit(store)
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    return parts._replace(netloc=netloc).geturl() + "&connect_timeout=1"


def flush(tracker: PerformanceTracker) -> SpoolFlush:
    """Forward the spool, trying again (for up to 30 s) while the pool replaces connections the outage broke,
    or while the tracker's background forwarder holds the spool (one forwarder at a time)."""
    flushed: list[SpoolFlush] = []

    def forwarded() -> bool:
        try:
            result = spooling_writer(tracker).flush()
        except StoreUnavailableError:
            return False
        flushed.append(result)
        return not result.forwarded_elsewhere  # the tracker's own forwarder was at it: a pass of ours next

    wait_for(forwarded, 30, "the spool to be forwarded")
    return flushed[-1]


def versions(tracker: PerformanceTracker, iid: object) -> list[int]:
    return [e.originator_version for e in tracker.history(iid)]  # type: ignore[arg-type]


def without_spool(store: str) -> str:
    """The same store for another process: its own spool (none), never the host's."""
    return store.split("&spool=", maxsplit=1)[0] + "&spool=off"


def started_elsewhere(pg_store: str, open_tracker: Open) -> tuple[PerformanceTracker, UUID]:
    """An iteration another process started and moved on; the host under test has never loaded it."""
    other = open_tracker(without_spool(pg_store), migrate=True)
    iid = other.start_iteration("agent-1", 7)
    other.update_phase(iid, "scan_generation")
    return other, iid


def kill_pooled_connections(tracker: PerformanceTracker, postgres_url: str) -> None:
    """The server closes every connection of the tracker's pool, as a restart does."""
    recorder = store_of(tracker).recorder
    assert isinstance(recorder, PostgresRecorder)
    datastore = recorder.datastore
    idle = datastore.pool.get_stats().get("pool_available", 0)
    assert idle >= 2
    with ExitStack() as held:  # every idle connection at once, so each one's backend is known
        pids = [held.enter_context(datastore.get_connection()).info.backend_pid for _ in range(idle)]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        wait_for(
            lambda: (
                admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone() == (0,)
            ),
            10,
            "the backends to end",
        )
