"""Follow mode: eventsourcing's projection runner, applying the events it receives in batches."""

from __future__ import annotations

import weakref
from threading import Event
from typing import Any

from eventsourcing.projection import ApplicationSubscription, BaseProjectionRunner

from itertrack.adapters.bootstrap import StoreApplication
from itertrack.adapters.views.keeper import DEFAULT_BATCH_SIZE, view_for
from itertrack.adapters.views.subscriptions import has_buffered
from itertrack.projections.projection import ReadModelProjection


class ReadModelRunner(BaseProjectionRunner[StoreApplication]):
    """Subscribes to the store's log (LISTEN/NOTIFY on PostgreSQL, polling on SQLite) and keeps the views.

    The library's runner applies one event per transaction; this one applies what the subscription
    has already fetched (up to `batch_size` events) in one transaction with one position.
    """

    def __init__(self, store: str, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        env = {"ITERTRACK_STORE": store, "ITERTRACK_MIGRATE": "n"}
        self.view_app = StoreApplication(env)
        self.view = view_for(self.view_app.factory)
        self.projection = ReadModelProjection(self.view, batch_size=batch_size)
        super().__init__(
            projection=self.projection,
            application_class=StoreApplication,
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
            self.view_app.close()
