"""The read-model tables of one store and their tracking position, changed together in one transaction."""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from eventsourcing.persistence import IntegrityError, TrackingRecorder

from itertrack.adapters.retry import retry_delay
from itertrack.adapters.views.queries import ViewQueries
from itertrack.adapters.views.sql import APPLICATION_NAME, LLM_CALL_COLUMNS
from itertrack.projections.fold import BatchChanges, FoldInput, LoadedState, fold, touched_ids
from itertrack.projections.projection import PositionConflictError
from itertrack.projections.rows import CurrentPhase, LLMCallRow

log = logging.getLogger("itertrack")

_T = TypeVar("_T")

# How many times a views transaction is tried when it fails transiently (a deadlock, a serialization failure).
WRITE_ATTEMPTS = 8


class ViewTables(ViewQueries, TrackingRecorder, ABC):
    """The views of one store, written in batches with their position (the library's tracking recorder)."""

    cas_insert: str
    cas_update: str
    cas_reset: str

    # -- store specifics -------------------------------------------------------------------

    @abstractmethod
    def _create_tracking_table(self) -> None:
        """Create the library's tracking table."""

    @abstractmethod
    def _max_position(self) -> int | None:
        """The library's max tracking id for the tracker's log."""

    # -- lifecycle -----------------------------------------------------------------------------

    def migrate_views(self) -> None:
        """Create the tracking table and the view tables (idempotent); add newer columns and tables, and rebuild
        the views then (from the events, by whoever applies them next)."""
        self._create_tracking_table()
        # A table this version adds, beside views that already hold rows: those rows' events are not in it.
        views_existed = self._has_table(self.statements.tables[0])
        added = [table for table in self.statements.added_tables if not self._has_table(table)]
        with self._transaction(commit=True) as c:
            for statement in self.statements.create:
                c.execute(statement)
        missing = self.outdated_columns()
        if missing or (added and views_existed):
            with self._write_transaction() as c:
                for table, column, kind in missing:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                # Rows written before the column or table existed lack its values: they are rebuilt from the events.
                c.execute(self.cas_reset, (APPLICATION_NAME,))
                for statement in self.statements.clear:
                    c.execute(statement)

    def outdated_columns(self) -> list[tuple[str, str, str]]:
        """Columns this version adds that the view tables do not have yet."""
        return [(t, col, typ) for t, col, typ in self.statements.added_columns if not self._has_column(t, col)]

    def missing_view_tables(self) -> list[str]:
        """View tables this version adds that do not exist yet (the migrate step creates them)."""
        return [table for table in self.statements.added_tables if not self._has_table(table)]

    @abstractmethod
    def _has_column(self, table: str, column: str) -> bool:
        """Whether a view table already has a column."""

    @abstractmethod
    def _has_table(self, table: str) -> bool:
        """Whether a view table exists (`table` as the statements name it, with its schema on PostgreSQL)."""

    def position(self) -> int:
        """The notification id of the last event applied (0 before the first)."""
        return self._max_position() or 0

    def reset(self) -> None:
        """Empty every view and forget the position, in one transaction under the views' write lock (for a
        rebuild): a batch being applied meanwhile is either all in before the reset or refused after it."""

        def once() -> None:
            with self._write_transaction() as c:
                c.execute(self.cas_reset, (APPLICATION_NAME,))  # the tracking row first, as `apply` takes it
                for statement in self.statements.clear:
                    c.execute(statement)

        self._retrying(once)

    # -- batches -------------------------------------------------------------------------------

    def apply(self, events: Sequence[FoldInput], expected: int, new: int) -> int:
        """Fold a batch of consecutive events onto the rows it touches, write them and move the position from
        `expected` to `new`: one transaction, under the views' write lock; returns how many events were applied.

        Every writer of the views (a follower, a rebuild's reset, the in-process keeper, a command's
        catch-up) goes through this method or `reset`, and each takes the same locks in the same order:
        the views' write lock (see `_lock_views`), then the tracking row, then the view rows. The rows a
        batch folds onto are read inside that transaction, after the position was checked, so they
        always hold exactly the events up to `expected` (rows read before a rebuild's reset can no longer
        be written back after it). The position moves by compare-and-set: if another writer moved it first,
        nothing is written and `PositionConflictError` is raised, so no event is ever applied twice. A
        deadlock or serialization failure rolls the transaction back and is tried again (`transient`).
        """
        return self._retrying(lambda: self._apply_once(events, expected, new))

    def _apply_once(self, events: Sequence[FoldInput], expected: int, new: int) -> int:
        position_moved = False
        try:
            with self._write_transaction() as c:
                # Position first: concurrent appliers queue on the tracking row, and the loser writes nothing.
                if expected == 0:
                    c.execute(self.cas_insert, (APPLICATION_NAME, new))
                else:
                    c.execute(self.cas_update, (new, APPLICATION_NAME, expected))
                    if c.fetchone() is None:
                        raise PositionConflictError(f"read models moved past position {expected} meanwhile")
                position_moved = True
                self._write(c, fold(events, self._load(c, events)))
        except IntegrityError as e:
            if position_moved:
                # A constraint a view row breaks is an error of its own, never retried as a position conflict
                # (it would fail again at the same position, for ever).
                raise
            raise PositionConflictError(f"read models were started from position 0 by another process: {e}") from e
        return len(events)

    def _write(self, c: Any, changes: BatchChanges) -> None:
        """Write a batch's changed rows, in its transaction: one `executemany` per statement."""
        s = self.statements
        # One call per statement: fewer round trips, and fewer hand-offs of the GIL to the
        # subscription's reading thread (each waits out the switch interval).
        rows: list[tuple[str, list[tuple[Any, ...]]]] = [
            (s.upsert_current, [self._current_params(row) for row in changes.current.values()]),
            (s.upsert_metric, [(self._db_id(i), m, self._db_total(t)) for (i, m), t in changes.metrics.items()]),
            (s.add_agent_metric, [(a, m, self._db_total(t), n) for (a, m), (t, n) in changes.agent_deltas.items()]),
            (s.upsert_duration, [(self._db_id(i), p, d, v) for (i, p), (d, v) in changes.durations.items()]),
            (s.insert_llm_call, [self._llm_call_params(row) for row in changes.llm_calls.values()]),
        ]
        for statement, params in rows:
            if params:
                c.executemany(statement, params)

    def _load(self, c: Any, events: Sequence[FoldInput]) -> LoadedState:
        """Read the rows of the iterations a batch touches, in the batch's own transaction (every metric and
        duration row of each: more than the batch needs is harmless, and cheaper than choosing). Metric and
        duration rows are only ever written with their iteration's current-phase row, so the iterations
        without one (new in this batch: all of them in a catch-up from scratch) cost one look-up only."""
        ids = touched_ids(events)
        loaded = LoadedState()
        if not ids:
            return loaded
        cond, params = self._where_in("id", [self._db_id(i) for i in ids])
        c.execute(f"{self.statements.select_current} WHERE {cond}", params)
        for row in c.fetchall():
            current = self._current_row(row)
            loaded.current[current.id] = current
        if not loaded.current:
            return loaded
        cond, params = self._where_in("iteration_id", [self._db_id(i) for i in loaded.current])
        c.execute(f"SELECT iteration_id, metric, total FROM {self.statements.tables[1]} WHERE {cond}", params)
        for row in c.fetchall():
            loaded.metrics[(self._uuid(row["iteration_id"]), row["metric"])] = self._total(row["total"])
        c.execute(
            f"SELECT iteration_id, phase, duration_ms, visits FROM {self.statements.tables[3]} WHERE {cond}",
            params,
        )
        for row in c.fetchall():
            loaded.durations[(self._uuid(row["iteration_id"]), row["phase"])] = (
                float(row["duration_ms"]),
                int(row["visits"]),
            )
        return loaded

    # -- the one write lock ------------------------------------------------------------------------

    @contextmanager
    def _write_transaction(self) -> Iterator[Any]:
        """A committing transaction that holds the views' write lock from its first statement to its end."""
        with self._transaction(commit=True) as c:
            self._lock_views(c)
            yield c

    @abstractmethod
    def _lock_views(self, c: Any) -> None:
        """Take the views' write lock for the rest of the transaction (waiting for whoever holds it)."""

    def _transient(self, error: BaseException) -> bool:
        """Whether a failed views transaction may simply be tried again (a deadlock, a serialization failure)."""
        return False

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        """Run a views transaction, again after a transient failure (jittered, capped), at most `WRITE_ATTEMPTS`
        times; the last failure is raised."""
        for tries in range(1, WRITE_ATTEMPTS + 1):
            try:
                return attempt()
            except Exception as e:
                if tries == WRITE_ATTEMPTS or not self._transient(e):
                    raise
                log.info("read models: %s; trying the transaction again", e)
                time.sleep(retry_delay(tries))
        raise AssertionError("unreachable")  # pragma: no cover

    def _db_total(self, value: int | float) -> Any:
        """A total as the store holds it (exact at any size: see each store's override)."""
        return value

    def _llm_call_params(self, row: LLMCallRow) -> tuple[Any, ...]:
        """A call row's values in `LLM_CALL_COLUMNS` order (flags as 0/1, server tools as JSON text)."""
        values = row.model_dump()
        values.update(
            iteration_id=self._db_id(row.iteration_id),
            recorded_at=self._db_time(row.recorded_at),
            usage_known=int(row.usage_known),
            batch=int(row.batch),
            server_tool_use=json.dumps(row.server_tool_use, sort_keys=True, separators=(",", ":")),
        )
        return tuple(values[column] for column in LLM_CALL_COLUMNS)

    def _current_params(self, row: CurrentPhase) -> tuple[Any, ...]:
        return (
            self._db_id(row.id),
            row.agent_id,
            row.iteration_number,
            row.phase,
            row.status.value,
            row.error,
            self._db_time(row.phase_entered_at),
            self._db_time(row.started_at),
            self._db_time(row.finished_at),
            self._db_time(row.updated_at),
            row.last_version,
            row.failed_in,
        )
