"""Consumers for the feed's tests, and a child-process entry point that runs one (for kill -9 drills).

`python -m feed_support STORE KIND [--follow]` (with tests/ on PYTHONPATH) runs consumer KIND on STORE:
`rows` (a TransactionalConsumer writing one row per event into `feed_rows`, with no unique key, so a
duplicate would show), or `keys:PATH` (a plain consumer appending `key position` lines to PATH).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

from itertrack.adapters.feed.consumer import Consumer, Delivery, TransactionalConsumer
from itertrack.adapters.feed.runner import run_consumer
from itertrack.domain import PerformanceTracker


class RowsConsumer(TransactionalConsumer):
    """One row per event in `feed_rows` (key, position), written in the checkpoint's transaction; fails on the
    positions in `fail_at`."""

    name: ClassVar[str] = "rows"

    def __init__(self, fail_at: frozenset[int] = frozenset()) -> None:
        self.fail_at = fail_at
        self.attempts: list[int] = []

    def migrate(self, cursor: Any, sql_dialect: str) -> None:
        cursor.execute("CREATE TABLE IF NOT EXISTS feed_rows (event_key TEXT NOT NULL, position BIGINT NOT NULL)")

    def handle_in(self, delivery: Delivery, cursor: Any, sql_dialect: str) -> None:
        self.attempts.append(delivery.position)
        if delivery.position in self.fail_at:
            raise ValueError(f"cannot take event {delivery.position}")
        p = "?" if sql_dialect == "sqlite" else "%s"
        insert = f"INSERT INTO feed_rows (event_key, position) VALUES ({p}, {p})"  # noqa: S608  # placeholders only
        cursor.execute(insert, (delivery.key, delivery.position))

    def reset(self, cursor: Any, sql_dialect: str) -> None:
        """--reset: the rows go with the checkpoint."""
        cursor.execute("DELETE FROM feed_rows")


class CollectingConsumer(Consumer):
    """Keeps every delivery in memory; fails on the positions in `fail_at`."""

    name: ClassVar[str] = "collect"

    def __init__(self, fail_at: frozenset[int] = frozenset(), event_types: tuple[str, ...] = ()) -> None:
        self.fail_at = fail_at
        self.deliveries: list[Delivery] = []
        self.attempts: list[int] = []
        self.closed = False
        if event_types:
            self.event_types = event_types  # type: ignore[misc]  # one instance's filter, for a test

    def handle(self, delivery: Delivery) -> None:
        self.attempts.append(delivery.position)
        if delivery.position in self.fail_at:
            raise ValueError(f"cannot take event {delivery.position}")
        self.deliveries.append(delivery)

    def close(self) -> None:
        self.closed = True


class KeysConsumer(Consumer):
    """Appends `key position` per event to a file (flushed and synced per line: survives a kill -9 of the process)."""

    name: ClassVar[str] = "keys"

    def __init__(self, path: Path) -> None:
        self.file = path.open("a", encoding="utf-8")

    def handle(self, delivery: Delivery) -> None:
        self.file.write(f"{delivery.key} {delivery.position}\n")
        self.file.flush()
        os.fsync(self.file.fileno())  # as a real downstream write would: handling takes time, as it does there

    def close(self) -> None:
        self.file.close()


def rows_of(tracker: PerformanceTracker) -> list[tuple[str, int]]:
    """`feed_rows` of the tracker's store."""
    from itertrack.adapters.bootstrap import store_of  # noqa: PLC0415
    from itertrack.adapters.feed.checkpoints import ConsumerTables  # noqa: PLC0415

    tables = ConsumerTables.of(store_of(tracker).factory)
    with tables.transaction(commit=False) as c:
        tables.for_consumer(c)
        c.execute("SELECT event_key, position FROM feed_rows ORDER BY position")
        return [(r["event_key"], int(r["position"])) for r in c.fetchall()]


def main(argv: list[str]) -> None:
    store, kind = argv[0], argv[1]
    follow = "--follow" in argv
    consumer: Consumer = RowsConsumer() if kind == "rows" else KeysConsumer(Path(kind.split(":", 1)[1]))
    tracker = PerformanceTracker(store=store, env={"ITERTRACK_START_OFFLINE": "n"})
    started = threading.Event()
    try:
        run_consumer(tracker, consumer, follow=follow, wait=True, on_start=started.set, batch_size=50)
    finally:
        tracker.close()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
