"""Follow mode: eventsourcing's projection runner, applying the events it receives in batches."""

from __future__ import annotations

import weakref
from threading import Event
from typing import Any

from eventsourcing.projection import ApplicationSubscription, BaseProjectionRunner
from eventsourcing.utils import Environment, EnvType

from itertrack.adapters.store.factory import MIGRATE, STORE, construct_factory
from itertrack.adapters.views.keeper import DEFAULT_BATCH_SIZE, view_for
from itertrack.adapters.views.subscriptions import has_buffered
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.projections.projection import ReadModelProjection


class FollowedTracker(PerformanceTracker):
    """The tracker as the library's runner constructs it: from an environment alone."""

    name = "PerformanceTracker"

    def __init__(self, env: EnvType | None = None) -> None:
        super().__init__(env=dict(env or {}))


class ReadModelRunner(BaseProjectionRunner[FollowedTracker]):
    """Subscribes to the store's log (LISTEN/NOTIFY on PostgreSQL, polling on SQLite) and keeps the views.

    The library's runner applies one event per transaction; this one applies what the subscription
    has already fetched (up to `batch_size` events) in one transaction with one position.
    """

    def __init__(self, store: str, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        env = {STORE: store, MIGRATE: "n"}
        # Same environment name as the tracker: PostgreSQL table names derive from it.
        self.view_factory = construct_factory(Environment(FollowedTracker.name, env))
        self.view = view_for(self.view_factory)
        self.projection = ReadModelProjection(self.view, batch_size=batch_size)
        super().__init__(
            projection=self.projection,
            application_class=FollowedTracker,
            tracking_recorder=self.view,
            topics=(),
            env=env,
        )

    @staticmethod
    def _process_events_loop(  # type: ignore[override]
        subscription: ApplicationSubscription[Any],
        projection: ReadModelProjection,
        is_stopping: Event,
        runner: weakref.ReferenceType[ReadModelRunner],
    ) -> None:
        """Collect events while the subscription has more at hand, then apply them as one batch."""
        try:
            batch: list[Any] = []
            for domain_event, tracking in subscription:
                batch.append((domain_event, tracking))
                if len(batch) >= projection.batch_size or not has_buffered(subscription):
                    projection.process_batch(batch)
                    batch = []
        except BaseException as e:
            live = runner()
            if live is not None:
                live._thread_error = e  # noqa: SLF001  # as the library's own loop does: no public setter
        finally:
            is_stopping.set()

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self.view_factory.close()
