"""The spool as an SQLite file beside the process (WAL, FULL synchronous: a spooled change is on disk)."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from itertrack.domain.errors import StoreUnavailableError
from itertrack.domain.records import IterationRecord
from itertrack.domain.spool import Spool, SpooledChange, SpoolEntry, SpoolStatus

DEFAULT_SPOOL = "itertrack-spool.db"


class SQLiteSpool(Spool):
    """Changes as rows: the events' versions, topics and states, and the record as JSON."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        # Opened on first need: a tracker that never spools leaves no file behind.
        self._db: sqlite3.Connection | None = None

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS spooled_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                    "iteration_id TEXT NOT NULL, events TEXT NOT NULL, record TEXT, stuck TEXT)"
                )
                conn.execute("CREATE INDEX IF NOT EXISTS spooled_changes_iteration ON spooled_changes (iteration_id)")
            except sqlite3.Error as e:
                raise StoreUnavailableError(
                    f"the store is unreachable and its spool {self.path} cannot be used: {e}"
                ) from e
            self._db = conn
        return self._db

    def _exists(self) -> bool:
        return self._db is not None or Path(self.path).exists()

    def add(self, iteration_id: UUID, events: Sequence[StoredEvent], record: IterationRecord | None) -> None:
        encoded = json.dumps(
            [[e.originator_version, e.topic, base64.b64encode(e.state).decode()] for e in events], separators=(",", ":")
        )
        with self._lock:
            self._conn.execute(
                "INSERT INTO spooled_changes (iteration_id, events, record) VALUES (?, ?, ?)",
                (str(iteration_id), encoded, None if record is None else record.model_dump_json()),
            )

    def waiting(self, limit: int) -> list[SpooledChange]:
        if not self._exists():
            return []
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, iteration_id, events, record, stuck FROM spooled_changes ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        changes = []
        for change_id, iteration_id, events, record, stuck in rows:
            iid = UUID(iteration_id)
            stored = tuple(
                StoredEvent(originator_id=iid, originator_version=v, topic=t, state=base64.b64decode(s))
                for v, t, s in json.loads(events)
            )
            parsed = None if record is None else IterationRecord.model_validate_json(record)
            changes.append(SpooledChange(id=change_id, iteration_id=iid, events=stored, record=parsed, stuck=stuck))
        return changes

    def remove(self, change_id: int) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM spooled_changes WHERE id = ?", (change_id,))

    def mark_stuck(self, change_id: int, reason: str) -> None:
        with self._lock:
            self._conn.execute("UPDATE spooled_changes SET stuck = ? WHERE id = ?", (reason, change_id))

    def count(self, iteration_id: UUID | None = None) -> int:
        if not self._exists():
            return 0
        with self._lock:
            if iteration_id is None:
                row = self._conn.execute("SELECT count(*) FROM spooled_changes").fetchone()
            else:
                row = self._conn.execute(
                    "SELECT count(*) FROM spooled_changes WHERE iteration_id = ?", (str(iteration_id),)
                ).fetchone()
        return int(row[0])

    def status(self) -> SpoolStatus:
        entries = tuple(
            SpoolEntry(
                id=c.id,
                iteration_id=c.iteration_id,
                versions=tuple(e.originator_version for e in c.events),
                with_record=c.record is not None,
                stuck=c.stuck,
            )
            for c in self.waiting(10**9)
        )
        return SpoolStatus(
            path=self.path, waiting=len(entries), stuck=sum(e.stuck is not None for e in entries), entries=entries
        )

    def close(self) -> None:
        """Close the file (if it was opened)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
