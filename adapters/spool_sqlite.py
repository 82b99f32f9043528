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

from itertrack.domain.commands import DEFERRED_CHANGE, DeferredChange
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
                    "iteration_id TEXT NOT NULL, events TEXT NOT NULL, record TEXT, stuck TEXT, deferred TEXT)"
                )
                columns = {row[1] for row in conn.execute("PRAGMA table_info(spooled_changes)")}
                if "deferred" not in columns:  # a spool file written before deferred changes existed
                    conn.execute("ALTER TABLE spooled_changes ADD COLUMN deferred TEXT")
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

    def add_deferred(self, iteration_id: UUID, deferred: DeferredChange, record: IterationRecord | None) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO spooled_changes (iteration_id, events, record, deferred) VALUES (?, '[]', ?, ?)",
                (
                    str(iteration_id),
                    None if record is None else record.model_dump_json(),
                    deferred.model_dump_json(),
                ),
            )

    def has_deferred(self, iteration_id: UUID) -> bool:
        if not self._exists():
            return False
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM spooled_changes WHERE iteration_id = ? AND deferred IS NOT NULL LIMIT 1",
                (str(iteration_id),),
            ).fetchone()
        return row is not None

    def waiting(self, limit: int, after: int = 0) -> list[SpooledChange]:
        if not self._exists():
            return []
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, iteration_id, events, record, stuck, deferred FROM spooled_changes WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        changes = []
        for change_id, iteration_id, events, record, stuck, deferred in rows:
            iid = UUID(iteration_id)
            stored = tuple(
                StoredEvent(originator_id=iid, originator_version=v, topic=t, state=base64.b64decode(s))
                for v, t, s in json.loads(events)
            )
            parsed = None if record is None else IterationRecord.model_validate_json(record)
            changes.append(
                SpooledChange(
                    id=change_id,
                    iteration_id=iid,
                    events=stored,
                    record=parsed,
                    stuck=stuck,
                    deferred=None if deferred is None else DEFERRED_CHANGE.validate_json(deferred),
                )
            )
        return changes

    def remove(self, *change_ids: int) -> None:
        with self._lock:
            self._conn.execute(
                "DELETE FROM spooled_changes WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(change_ids),)
            )

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
                deferred=None if c.deferred is None else c.deferred.change.describe(),
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
