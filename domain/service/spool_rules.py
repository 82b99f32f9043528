"""The two domain decisions behind the outage spool, as pure functions its adapter calls."""

from __future__ import annotations

from collections.abc import Collection
from uuid import UUID


def must_wait_as_change(*, waiting: int, waiting_as_changes: int, cached: bool, store_answers: bool) -> bool:
    """Whether a change must be kept as a change (a command) instead of being applied to a copy here now.

    Behind a change of the iteration that already waits as a change, always (order). Otherwise only
    when this process holds no copy of the iteration and cannot learn its next version: earlier events
    of it wait in the spool (the store's copy is behind them) or the store does not answer.
    """
    return waiting_as_changes > 0 or (not cached and (waiting > 0 or not store_answers))


def already_applied(stored_event_ids: Collection[UUID], event_id: UUID) -> bool:
    """Whether a change whose event carries `event_id` is already in the iteration's stored history.

    Every change carries the id its event will have, the same on every attempt: a forward that committed
    before a crash (or whose acknowledgement was lost) is recognised by it and never applied twice.
    """
    return event_id in stored_event_ids
