"""The live board's feed: one task follows the store's log and fans the changed iterations out to every browser.

Server-sent events carry `id:` = the log position (notification id) of the change, so a browser that
reconnects sends `Last-Event-ID` and gets every iteration changed after it: from the feed's memory when it
still holds that range, else read once from the log (`select_notifications`). However many browsers follow,
the store is polled by one task, with one cheap query (the log's last position) per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.documents.dashboard import BoardRow
from itertrack.adapters.web.pages import Dashboard, touched

log = logging.getLogger("itertrack")

# A browser further behind than this many changed iterations reloads the page instead of replaying them.
MOST_REPLAYED = 500
NOTIFICATION_PAGE = 1000
# A burst of more changed iterations than this in one poll (a bulk import) makes every browser reload instead.
MOST_FOLLOWED = 2000
KEEPALIVE_S = 15.0
RECONNECT_MS = 1000

# One update: the log position it is current to, and the iteration's board row (None: reload the page).
Update = tuple[int, dict[str, Any] | None]


class LiveFeed:
    """Follows the log from the position it starts at; `stream(after)` yields SSE messages for one browser."""

    def __init__(self, dashboard: Dashboard, *, poll_interval: float = 0.25, keep: int = 10_000) -> None:
        self.dashboard = dashboard
        self.poll_interval = poll_interval
        self.keep = keep
        # Changes in (floor, position] are in `recent`, oldest first, one entry per change of an iteration.
        self.position = 0
        self.floor = 0
        self.recent: deque[tuple[int, str, dict[str, Any] | None]] = deque()
        self.started = asyncio.Event()
        # Set (and replaced) each time the position moves: streams wait on the one current when they looked.
        self._moved = asyncio.Event()
        self._failing = False
        self.clients = 0
        self.closing = False

    def close(self) -> None:
        """End every stream (the server is stopping: browsers reconnect to the next one). Call on the loop."""
        self.closing = True
        self._moved.set()

    # -- following the log (one task) -------------------------------------------------------

    async def run(self) -> None:
        """Poll the log's last position; read what changed after the last one seen; wake every stream."""
        while True:
            try:
                await self._poll_once()
                if self._failing:
                    log.warning("dashboard: following the log again")
                    self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not self._failing:
                    log.warning("dashboard: cannot follow the log: %s", e)
                    self._failing = True
            await asyncio.sleep(self.poll_interval)

    async def _poll_once(self) -> None:
        if not self.started.is_set():
            self.position = self.floor = await asyncio.to_thread(self.dashboard.log_position)
            self.started.set()
        latest = await asyncio.to_thread(self.dashboard.log_position)
        if latest <= self.position:
            return
        updates = await asyncio.to_thread(self.read_log, self.position, latest, MOST_FOLLOWED)
        for position, row in updates:
            self.recent.append((position, "" if row is None else row["iteration_id"], row))
        while len(self.recent) > self.keep:
            self.floor = self.recent.popleft()[0]
        self.position = latest
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        if self.closing:
            self._moved.set()

    def read_log(self, after: int, upto: int, limit: int | None = MOST_REPLAYED) -> list[Update]:
        """The board rows of iterations changed in (after, upto], ordered by their last change; one reload
        marker instead when more than `limit` iterations changed (blocking: store reads)."""
        recorder = store_of(self.dashboard.models.tracker).recorder
        changed: dict[UUID, int] = {}
        start = after + 1
        while start <= upto:
            page = recorder.select_notifications(start=start, limit=NOTIFICATION_PAGE, stop=upto)
            if not page:
                break
            changed.update(touched(page))
            if limit is not None and len(changed) > limit:
                return [(upto, None)]
            start = page[-1].id + 1
        updates: list[Update] = []
        for iid, position in sorted(changed.items(), key=lambda kv: kv[1]):
            try:
                updates.append((position, self.dashboard.board_row(iid)))
            except LookupError:
                continue  # not an iteration's event
        return updates

    # -- one browser ------------------------------------------------------------------------

    def _remembered(self, after: int) -> list[Update]:
        """Changes after `after` from memory (after >= floor), the newest row of each iteration only."""
        newest: dict[str, tuple[int, dict[str, Any] | None]] = {}
        for position, iid, row in self.recent:
            if position > after:
                newest.pop(iid, None)
                newest[iid] = (position, row)
        return sorted(newest.values(), key=lambda u: u[0])

    async def stream(self, after: int | None, is_gone: Callable[[], Any]) -> AsyncIterator[str]:
        """SSE messages for one browser: every change after `after` (now when None), then each as it comes."""
        await self.started.wait()
        self.clients += 1
        try:
            yield f"retry: {RECONNECT_MS}\n\n"
            pos = self.position if after is None else after
            if after is None:
                yield _message(pos, "position", pos)
            while not self.closing:
                if pos < self.position:
                    upto = self.position
                    if pos >= self.floor:
                        updates = self._remembered(pos)
                    else:
                        updates = await asyncio.to_thread(self.read_log, pos, upto)
                    for position, row in updates:
                        if row is None:
                            yield _message(upto, "reload", upto)
                        else:
                            yield _message(position, "iteration", row)
                    pos = max(pos, upto)
                    yield _message(pos, "position", pos)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._moved.wait(), KEEPALIVE_S)
                if self.closing or await is_gone():
                    return
                if self.position <= pos:
                    yield ": keepalive\n\n"
        finally:
            self.clients -= 1


def _message(position: int, event: str, data: Any) -> str:
    """One SSE message; an `iteration` message's data is a board row (`BoardRow`, as in `/api/board`)."""
    text = BoardRow.model_validate(data).model_dump_json() if event == "iteration" else json.dumps(data)
    return f"id: {position}\nevent: {event}\ndata: {text}\n\n"
