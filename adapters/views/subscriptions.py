"""Subscriptions to the event log: a polling one for SQLite, on the library's own base class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, ListenNotifySubscription

from itertrack.adapters.library_hooks import (
    subscription_failed,
    subscription_has_buffered,
    subscription_pull,
    subscription_stopped,
    subscription_wakeup,
)

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
        subscription_wakeup(self).set()

    def _loop_on_pull(self) -> None:
        try:
            subscription_pull(self)
            while not subscription_stopped(self):
                subscription_wakeup(self).wait(timeout=self.poll_interval)
                subscription_pull(self)
        except BaseException as e:
            subscription_failed(self, e)
            self.stop()


def has_buffered(subscription: Any) -> Callable[[], bool]:
    """A check of whether a library `ListenNotifySubscription` holds notifications already fetched but not
    yet yielded (always False for another kind): lets a runner cut a batch when the subscription has
    caught up, instead of after every event. Resolved once, as it is asked after every event.
    """
    inner = getattr(subscription, "subscription", subscription)
    if not isinstance(inner, ListenNotifySubscription):
        return lambda: False
    return lambda: subscription_has_buffered(inner)
