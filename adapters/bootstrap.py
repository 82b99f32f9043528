"""The composition root: a store URL plus settings become a wired tracker's ports.

Registered as the `itertrack.wiring` entry point (pyproject.toml), so `PerformanceTracker(store=...)`
finds it without the domain naming an adapter. Nothing else constructs stores, spools or writers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from eventsourcing.utils import Environment

from itertrack.adapters import ids
from itertrack.adapters.retry import JitteredPause
from itertrack.adapters.settings import Settings, load_settings
from itertrack.adapters.spool.location import open_spool
from itertrack.adapters.spool.writer import SpoolingWriter
from itertrack.adapters.store.direct_writer import DirectWriter
from itertrack.adapters.store.event_store import EventSourcedStore, TrackerApplication
from itertrack.adapters.store.factory import open_factory
from itertrack.adapters.store.url import DEFAULT_STORE, StoreURL, parse_store_url
from itertrack.domain.model.errors import StoreConfigError
from itertrack.domain.service.clock import Clock
from itertrack.domain.service.store_ports import IterationWriter
from itertrack.domain.service.tracker import DEFAULT_MAX_ATTEMPTS, PerformanceTracker
from itertrack.domain.service.wiring import TrackerPorts

# The composition root sets the domain's random-id seam for the process as it loads (before any tracker is
# wired): ids without a system call per change (adapters/ids.py says why).
ids.install()


def store_url(store: str | None, settings: Settings) -> StoreURL:
    """The store a tracker uses: the argument, else `ITERTRACK_STORE`, else the embedded default."""
    return parse_store_url(store or settings.store or DEFAULT_STORE)


def wire_tracker(
    store: str | None,
    *,
    migrate: bool | None,
    env: Mapping[str, str],
    clock: Clock,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> TrackerPorts:
    """The ports of a tracker on `store` (raises `StoreConfigError`, `StoreNotMigratedError`, `StoreUnavailableError`).

    `env` holds settings that win over the environment (`ITERTRACK_*`, and the library's own keys).
    A PostgreSQL store writes through an outage spool unless its URL says `spool=off`.
    """
    settings = load_settings(env)
    if migrate is not None:
        settings = settings.model_copy(update={"migrate": migrate})
    url = store_url(store, settings)
    merged = {**os.environ, **env}
    opened = open_factory(url, settings, Environment(TrackerApplication.name, merged))
    try:
        event_store = EventSourcedStore(
            opened.factory,
            env,
            shown=url.redacted,
            group_max_changes=settings.group_commit_changes,
            group_max_bytes=settings.group_commit_bytes,
        )
    except BaseException:
        opened.factory.close()
        raise
    retry = JitteredPause()
    writer: IterationWriter
    if url.scheme == "postgresql" and url.spool != "off":
        writer = SpoolingWriter(
            event_store,
            open_spool(url, settings),
            started_offline=opened.started_offline,
            forward=settings.forward,
            clock=clock,
            retry=retry,
            max_attempts=max_attempts,
        )
    else:
        writer = DirectWriter(event_store)
    return TrackerPorts(
        store=event_store, writer=writer, retry=retry, replay_cache_entries=settings.replay_cache_entries
    )


def store_of(tracker: PerformanceTracker) -> EventSourcedStore:
    """The event store behind a tracker wired here (views, verify and the CLI read through it)."""
    store = tracker.ports.store
    if not isinstance(store, EventSourcedStore):
        raise StoreConfigError("store", type(store).__name__, "is not an eventsourcing store wired by itertrack")
    return store


def spooling_writer(tracker: PerformanceTracker) -> SpoolingWriter:
    """The tracker's spooling writer (`StoreConfigError` when its store has no spool)."""
    writer = tracker.ports.writer
    if not isinstance(writer, SpoolingWriter):
        raise StoreConfigError("store", type(writer).__name__, "has no spool (only PostgreSQL stores spool)")
    return writer
