"""The one catch-up mechanism of the views: eventsourcing's projection runner over an open tracker's log.

`catch_up` runs it until the log's max notification id (as of the call) is applied, then stops it;
`itertrack project --follow` keeps it running; `ReadModels` keeps it running in the host's process.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import ListenNotifySubscription, Tracking, TrackingRecorder
from eventsourcing.projection import ApplicationSubscription, BaseProjectionRunner
from eventsourcing.utils import EnvType

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.library_hooks import runner_error, runner_subscription, set_runner_error, subscription_wakeup
from itertrack.adapters.store.postgres import PostgresRecorder
from itertrack.adapters.views.decode import FoldMapper
from itertrack.adapters.views.subscriptions import PollingSubscription, has_buffered
from itertrack.adapters.views.tables import ViewTables
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.projections.projection import DEFAULT_BATCH_SIZE, ReadModelsResetError, ViewProjection


def _log_of(tracker: PerformanceTracker, mapper: Any = None) -> type[Application[UUID]]:
    """The class the library's runner 'constructs' its application from: the open tracker's log, decoded by
    `mapper` (default: the tracker's own)."""

    class TrackerLog(Application[UUID]):
        """The tracker's recorder and mapper, borrowed; closing it leaves the tracker to its owner."""

        name = store_of(tracker).app.name

        def __init__(self, env: EnvType | None = None) -> None:  # the runner passes its env
            # Deliberately not Application.__init__: nothing is built, the open tracker's parts are reused.
            self.recorder = store_of(tracker).recorder
            self.mapper = mapper if mapper is not None else store_of(tracker).mapper

        def close(self) -> None:
            """The tracker stays open: it belongs to whoever opened it."""

    return TrackerLog


class RunnerProgress:
    """How far a runner has processed the log, and whether (and why) it stopped; waitable."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.processed = 0
        self.ended = False
        self.error: BaseException | None = None

    def advance(self, notification_id: int) -> None:
        """Every event up to `notification_id` is in the views (applied here or by another process)."""
        with self._changed:
            self.processed = notification_id
            self._changed.notify_all()

    def end(self, error: BaseException | None) -> None:
        """The runner stopped (with `error`, or because it was asked to)."""
        with self._changed:
            self.ended, self.error = True, error
            self._changed.notify_all()

    def wait_for(self, notification_id: int, timeout: float | None) -> bool:
        """Whether the log up to `notification_id` was processed before the runner stopped or `timeout` passed."""
        with self._changed:
            self._changed.wait_for(lambda: self.processed >= notification_id or self.ended, timeout)
            return self.processed >= notification_id


class BatchProjection(Protocol):
    """What a `BatchRunner` drives: a projection that takes the events the subscription holds in batches."""

    batch_size: int

    def process_batch(self, items: Sequence[tuple[Any, Tracking]]) -> None:
        """Process consecutive events of the log (with their positions), recording the last one's position."""
        ...


class BatchRunner(BaseProjectionRunner[Application[UUID]]):
    """The library's projection runner over an open tracker's log, processing what its subscription has already
    fetched (up to the projection's `batch_size` events) as one batch.

    It subscribes from `tracking_recorder.max_tracking_id(...)` (LISTEN/NOTIFY on PostgreSQL, polling on
    SQLite), reads through the open tracker's recorder and mapper, and leaves the tracker open when it stops.
    The read models (`ViewRunner`) and the feed's named consumers each subclass it.
    """

    def __init__(
        self,
        tracker: PerformanceTracker,
        projection: Any,
        tracking_recorder: TrackingRecorder,
        *,
        poll_interval: float | None = None,
        mapper: Any = None,
    ) -> None:
        self.progress = RunnerProgress()
        self.tracking = tracking_recorder
        recorder = store_of(tracker).recorder
        # On PostgreSQL the subscription holds a pooled connection (LISTEN) until the runner exits: the
        # pool, shared by the process's trackers, grows by one meanwhile.
        self._give_back_listener = recorder.room_for_listener() if isinstance(recorder, PostgresRecorder) else None
        try:
            super().__init__(
                projection=projection,
                application_class=_log_of(tracker, mapper),
                tracking_recorder=tracking_recorder,
                topics=(),
            )
        except BaseException:
            self._narrow()
            raise
        polling = runner_subscription(self).subscription
        if poll_interval is not None and isinstance(polling, PollingSubscription):
            polling.poll_interval = poll_interval

    def position(self) -> int:
        """The notification id of the last event processed, as the tracking recorder holds it (0 before the first)."""
        return self.tracking.max_tracking_id(self.app_name) or 0

    def _narrow(self) -> None:
        if self._give_back_listener is not None:
            self._give_back_listener()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        """Stop the runner (the library's exit), then give back the listener's room in the pool."""
        try:
            super().__exit__(exc_type, exc_val, exc_tb)
        finally:
            self._narrow()

    def wake(self) -> None:
        """Have the subscription look at the log now: events were written in this process, or a reader waited
        a second without progress. On PostgreSQL too: the library's subscription pulls once, then only on a
        NOTIFY, and a commit between that first pull and its LISTEN taking effect sends one nobody hears."""
        subscription = runner_subscription(self).subscription
        if isinstance(subscription, ListenNotifySubscription):
            subscription_wakeup(subscription).set()

    def wait_until(self, notification_id: int, timeout: float | None = None) -> bool:
        """Block until the log up to `notification_id` is processed (True), or the runner stopped or
        `timeout` passed (False); if the runner stopped on an error, raise that error here, once."""
        if self.progress.wait_for(notification_id, timeout):
            return True
        error = self.progress.error
        if error is None:
            return False
        if runner_error(self) is error:
            set_runner_error(self, None)  # raised here: neither `run_forever` nor `__exit__` raises it again
        raise error

    @staticmethod
    def _process_events_loop(  # type: ignore[override]
        subscription: ApplicationSubscription[Any],
        projection: BatchProjection,
        is_stopping: threading.Event,
        runner: weakref.ReferenceType[BatchRunner],
    ) -> None:
        """Collect events while the subscription has more at hand, then apply them as one batch."""
        error: BaseException | None = None
        try:
            batch: list[tuple[Any, Tracking]] = []
            more_at_hand = has_buffered(subscription)
            for domain_event, tracking in subscription:
                batch.append((domain_event, tracking))
                if len(batch) >= projection.batch_size or not more_at_hand():
                    projection.process_batch(batch)
                    batch = []
                    live = runner()
                    if live is not None:
                        live.progress.advance(tracking.notification_id)
                    del live
        except BaseException as e:
            error = e
        finally:
            live = runner()
            if live is not None:
                if error is not None:
                    set_runner_error(live, error)  # the library's runner reports errors this way
                live.progress.end(error)
            is_stopping.set()


class ViewRunner(BatchRunner):
    """Subscribes to the tracker's log (LISTEN/NOTIFY on PostgreSQL, polling on SQLite) and keeps the views.

    The library's runner applies one event per transaction; this one applies what the subscription
    has already fetched (up to `batch_size` events) in one transaction with one position. The commonest
    events reach the fold as facts read straight from their stored JSON (`FoldMapper`), the others as events.
    """

    def __init__(
        self,
        tracker: PerformanceTracker,
        view: ViewTables,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_batch: Callable[[int], None] | None = None,
        poll_interval: float | None = None,
    ) -> None:
        self.view = view
        self.projection = ViewProjection(view, batch_size=batch_size, on_batch=on_batch)
        mapper = FoldMapper(store_of(tracker).mapper)
        super().__init__(tracker, self.projection, view, poll_interval=poll_interval, mapper=mapper)

    def position(self) -> int:
        """The views' position (the notification id of the last event applied)."""
        return self.view.position()


def catch_up(
    tracker: PerformanceTracker,
    view: ViewTables,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Apply every event the log holds now, then stop; returns how many this call applied.

    Events another process applies meanwhile are skipped; if the views are emptied under it (a
    rebuild elsewhere), it starts again from their new position.
    """
    target = store_of(tracker).recorder.max_notification_id() or 0
    applied = 0
    while view.position() < target:
        runner = ViewRunner(tracker, view, batch_size=batch_size, on_batch=on_batch)
        try:
            with runner:
                runner.wait_until(target)
        except ReadModelsResetError:
            pass
        finally:
            applied += runner.projection.applied
    return applied
