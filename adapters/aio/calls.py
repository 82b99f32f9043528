"""The calls the async tracker queues (adapters/aio/dispatch.py runs them): each holds what it needs as fields,
not as closures, so a change in flight is a few objects for the cyclic garbage collector to look at, not a
dozen (with 200 changes in flight, generation-0 collections come every few dozen changes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import ClassVar, Generic, TypeVar
from uuid import UUID

from itertrack.domain.model.changes import Change
from itertrack.domain.service.decided import DecidedChange
from itertrack.domain.service.tracker import PerformanceTracker

_T = TypeVar("_T")


class Call(Generic[_T]):
    """One call of the host: its lane (calls of a lane run one at a time, in order), what its await returns
    once decided and written (`value`), how to decide it on the loop (`decide`, when `decidable`) and how to run
    it on a worker thread (`slow`). `future` is set when the call is queued."""

    __slots__ = ("future", "lane", "value")
    decidable: ClassVar[bool] = False

    def __init__(self, lane: Hashable, value: _T | None = None) -> None:
        self.lane = lane
        self.value = value
        self.future: asyncio.Future[_T] | None = None

    def decide(self) -> DecidedChange | None:
        """Decide the change on the loop: its events, or None when it must run on a worker thread (`slow`).
        Raises the domain's errors (nothing written). Only called when `decidable`."""
        return None

    def slow(self) -> _T:
        """Run the call the sync tracker's way (may wait on locks and the store): on a worker thread."""
        raise NotImplementedError


class RunCall(Call[_T]):
    """A call that always runs on a worker thread: `run()` (a read, a keyed start, the saving step)."""

    __slots__ = ("_run",)

    def __init__(self, lane: Hashable, run: Callable[[], _T]) -> None:
        self.lane = lane
        self.value = None
        self.future = None
        self._run = run

    def slow(self) -> _T:
        return self._run()


class ChangeCall(Call[_T]):
    """A change to one cached iteration (`PerformanceTracker.decide_change`), else applied on a worker thread
    (`apply_change`, with its idempotency key). Its await returns `value`."""

    __slots__ = ("_change", "_iid", "_key", "_tracker")
    decidable = True

    def __init__(
        self, tracker: PerformanceTracker, iid: UUID, change: Change, key: str | None, value: _T | None = None
    ) -> None:
        self.lane = tracker.lane_of(iid)
        self.value = value
        self.future = None
        self._tracker = tracker
        self._iid = iid
        self._change = change
        self._key = key

    def decide(self) -> DecidedChange | None:
        return self._tracker.decide_change(self._iid, self._change)

    def slow(self) -> _T:
        self._tracker.apply_change(self._iid, self._change, self._key)
        return self.value  # type: ignore[return-value]  # the value given, None included


class StartCall(Call[UUID]):
    """An unkeyed start under a chosen id (`PerformanceTracker.decide_start`), else on a worker thread
    (`start_iteration`). Its await returns the id."""

    __slots__ = ("_agent_id", "_iteration_number", "_tracker")
    decidable = True

    def __init__(self, tracker: PerformanceTracker, agent_id: str, iteration_number: int, iid: UUID) -> None:
        self.lane = tracker.lane_of(iid)
        self.value = iid
        self.future = None
        self._tracker = tracker
        self._agent_id = agent_id
        self._iteration_number = iteration_number

    def decide(self) -> DecidedChange | None:
        assert self.value is not None
        return self._tracker.decide_start(self._agent_id, self._iteration_number, self.value)

    def slow(self) -> UUID:
        assert self.value is not None
        return self._tracker.start_iteration(self._agent_id, self._iteration_number, self.value)
