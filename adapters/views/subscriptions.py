"""Subscriptions to the event log: a polling one for SQLite, on the library's own base class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, ListenNotifySubscription

DEFAULT_POLL_INTERVAL_S = 0.02


class PollingSubscription(ListenNotifySubscription[ApplicationRecorder]):
    """eventsourcing 9.5.6 has no SQLite subscription: pull new notifications every poll interval.

    Writers in the same process wake it at once (`notify`); other processes' events are seen
    within one interval.
    """

    def __init__(
        self,
        recorder: ApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
    ) -> None:
        self.poll_interval = poll_interval
        super().__init__(recorder=recorder, gt=gt, topics=topics)

    def notify(self) -> None:
        """New events were written in this process: pull now."""
        self._has_been_notified.set()

    def _loop_on_pull(self) -> None:
        try:
            self._pull()
            while not self._has_been_stopped:
                self._has_been_notified.wait(timeout=self.poll_interval)
                self._pull()
        except BaseException as e:
            if self._thread_error is None:
                self._thread_error = e
            self.stop()


def has_buffered(subscription: Any) -> Callable[[], bool]:
    """A check of whether a library `ListenNotifySubscription` holds notifications already fetched but not
    yet yielded (always False for another kind): lets a runner cut a batch when the subscription has
    caught up, instead of after every event. Resolved once, as it is asked after every event.
    """
    inner = getattr(subscription, "subscription", subscription)
    if not isinstance(inner, ListenNotifySubscription):
        return lambda: False
    # Private attributes of the library's class (9.5.6): the fetched list, its index, and the queue.
    return lambda: inner._notifications_index < len(inner._notifications) or not inner._notifications_queue.empty()
