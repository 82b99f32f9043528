"""The read-model tables of one store and their tracking position, changed together in one transaction."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, TrackingRecorder

from itertrack.adapters.views.sql import CURRENT_COLUMNS, ViewStatements
from itertrack.domain.model.errors import IterationNotFoundError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.metrics import Amount
from itertrack.domain.model.phases import Status
from itertrack.domain.model.text import check_filter_text
from itertrack.projections.fold import BatchChanges, LoadedState, metric_keys, phase_keys, touched_ids
from itertrack.projections.projection import PositionConflictError
from itertrack.projections.report import ReportRows
from itertrack.projections.rows import AgentMetric, CurrentPhase, IterationMetric, PhaseDuration
from itertrack.projections.verification import ReadModelState

APPLICATION_NAME = "PerformanceTracker"


class ViewTables(TrackingRecorder, ABC):
    """The views of one store, as the library's tracking recorder of their position.

    Store-neutral logic; subclasses bring the connection, the types and the id lists.
    """

    statements: ViewStatements
    cas_insert: str
    cas_update: str

    # -- store specifics -------------------------------------------------------------------

    @abstractmethod
    def _transaction(self, *, commit: bool) -> AbstractContextManager[Any]:
        """A cursor in one transaction, committed when `commit`, else rolled back."""

    @abstractmethod
    def _where_in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A `column IN (...)` condition and its parameters."""

    @abstractmethod
    def _create_tracking_table(self) -> None:
        """Create the library's tracking table."""

    @abstractmethod
    def _max_position(self) -> int | None:
        """The library's max tracking id for the tracker's log."""

    def _db_id(self, value: UUID) -> Any:
        return value

    def _uuid(self, value: Any) -> UUID:
        return value if isinstance(value, UUID) else UUID(str(value))

    def _db_time(self, value: datetime | None) -> Any:
        return value

    def _time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return moment.astimezone(UTC)

    @staticmethod
    def _total(value: Any) -> Amount:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        return value  # type: ignore[no-any-return]

    # -- lifecycle -----------------------------------------------------------------------------

    def migrate_views(self) -> None:
        """Create the tracking table and the view tables (idempotent); add newer columns and rebuild then."""
        self._create_tracking_table()
        with self._transaction(commit=True) as c:
            for statement in self.statements.create:
                c.execute(statement)
        missing = self.outdated_columns()
        if missing:
            with self._transaction(commit=True) as c:
                for table, column, kind in missing:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            # Rows written before the column existed lack its values: rebuild them from the events.
            self.reset()

    def outdated_columns(self) -> list[tuple[str, str, str]]:
        """Columns this version adds that the view tables do not have yet."""
        return [(t, col, typ) for t, col, typ in self.statements.added_columns if not self._has_column(t, col)]

    @abstractmethod
    def _has_column(self, table: str, column: str) -> bool:
        """Whether a view table already has a column."""

    def position(self) -> int:
        """The notification id of the last event applied (0 before the first)."""
        return self._max_position() or 0

    def reset(self) -> None:
        """Empty every view and forget the position, in one transaction (for a rebuild)."""
        with self._transaction(commit=True) as c:
            for statement in self.statements.clear:
                c.execute(statement)
            c.execute(self.cas_reset, (APPLICATION_NAME,))

    # -- batches -------------------------------------------------------------------------------

    def load(self, events: Sequence[Iteration.Event]) -> LoadedState:
        """Read the rows a batch touches."""
        ids = touched_ids(events)
        loaded = LoadedState()
        if not ids:
            return loaded
        db_ids = [self._db_id(i) for i in ids]
        with self._transaction(commit=False) as c:
            cond, params = self._where_in("id", db_ids)
            c.execute(f"{self.statements.select_current} WHERE {cond}", params)
            for row in c.fetchall():
                current = self._current_row(row)
                loaded.current[current.id] = current
            wanted_metrics = set(metric_keys(events))
            if wanted_metrics:
                cond, params = self._where_in("iteration_id", db_ids)
                c.execute(f"SELECT iteration_id, metric, total FROM {self.statements.tables[1]} WHERE {cond}", params)
                for row in c.fetchall():
                    key = (self._uuid(row["iteration_id"]), row["metric"])
                    if key in wanted_metrics:
                        loaded.metrics[key] = self._total(row["total"])
            wanted_phases = set(phase_keys(events, loaded.current))
            cond, params = self._where_in("iteration_id", db_ids)
            c.execute(
                f"SELECT iteration_id, phase, duration_ms, visits FROM {self.statements.tables[3]} WHERE {cond}",
                params,
            )
            for row in c.fetchall():
                key = (self._uuid(row["iteration_id"]), row["phase"])
                if key in wanted_phases:
                    loaded.durations[key] = (float(row["duration_ms"]), int(row["visits"]))
        return loaded

    def apply(self, changes: BatchChanges, expected: int, new: int) -> None:
        """Write a batch's changes and move the position from `expected` to `new`, atomically.

        The position moves by compare-and-set: if another process moved it first, nothing is written
        and `PositionConflictError` is raised, so no event is ever applied twice.
        """
        s = self.statements
        try:
            with self._transaction(commit=True) as c:
                # Position first: concurrent appliers queue on the tracking row, and the loser writes nothing.
                if expected == 0:
                    c.execute(self.cas_insert, (APPLICATION_NAME, new))
                else:
                    c.execute(self.cas_update, (new, APPLICATION_NAME, expected))
                    if c.fetchone() is None:
                        raise PositionConflictError(f"read models moved past position {expected} meanwhile")
                # One call per statement: fewer round trips, and fewer hand-offs of the GIL to the
                # subscription's reading thread (each waits out the switch interval).
                rows: list[tuple[str, list[tuple[Any, ...]]]] = [
                    (s.upsert_current, [self._current_params(row) for row in changes.current.values()]),
                    (s.upsert_metric, [(self._db_id(i), m, t) for (i, m), t in changes.metrics.items()]),
                    (s.add_agent_metric, [(a, m, t, n) for (a, m), (t, n) in changes.agent_deltas.items()]),
                    (s.upsert_duration, [(self._db_id(i), p, d, v) for (i, p), (d, v) in changes.durations.items()]),
                ]
                for statement, params in rows:
                    if params:
                        c.executemany(statement, params)
        except IntegrityError as e:
            raise PositionConflictError(f"read models were started from position 0 by another process: {e}") from e

    # -- snapshots ------------------------------------------------------------------------------

    def _snapshot_transaction(self) -> AbstractContextManager[Any]:
        """A read transaction whose statements all see one snapshot."""
        return self._transaction(commit=False)

    def snapshot(self) -> tuple[int, ReadModelState]:
        """The position and every view row, read consistently (for verifying against the events)."""
        s = self.statements
        state = ReadModelState()
        with self._snapshot_transaction() as c:
            c.execute(self.select_position, (APPLICATION_NAME,))
            row = c.fetchone()
            position = 0 if row is None else int(row["notification_id"])
            c.execute(s.select_current)
            for r in c.fetchall():
                current = self._current_row(r)
                state.current[current.id] = current
            c.execute(f"SELECT iteration_id, metric, total FROM {s.tables[1]}")
            for r in c.fetchall():
                state.metrics[(self._uuid(r["iteration_id"]), r["metric"])] = self._total(r["total"])
            c.execute(s.select_all_agent_metrics)
            for r in c.fetchall():
                state.agents[(r["agent_id"], r["metric"])] = (float(self._total(r["total"])), int(r["iterations"]))
            c.execute(f"SELECT iteration_id, phase, duration_ms, visits FROM {s.tables[3]}")
            for r in c.fetchall():
                state.durations[(self._uuid(r["iteration_id"]), r["phase"])] = (
                    float(r["duration_ms"]),
                    int(r["visits"]),
                )
        return position, state

    # -- report -------------------------------------------------------------------------------

    def report_rows(
        self, agent: str | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> ReportRows:
        """Iterations started in [since, until) (of one agent), their phase durations and token totals."""
        check_filter_text("agent", agent)
        s, ph = self.statements, self._placeholder
        conditions, params = [], []
        if agent is not None:
            conditions.append(f"c.agent_id = {ph}")
            params.append(agent)
        if since is not None:
            conditions.append(f"c.started_at >= {ph}")
            params.append(self._db_time(since))
        if until is not None:
            conditions.append(f"c.started_at < {ph}")
            params.append(self._db_time(until))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        cur, met, _, dur = s.tables
        rows = ReportRows()
        with self._snapshot_transaction() as c:
            c.execute(f"{s.select_current} c{where} ORDER BY c.started_at, c.id", params)
            rows.iterations = [self._current_row(r) for r in c.fetchall()]
            join = f"JOIN {cur} c ON c.id = d.iteration_id"
            c.execute(f"SELECT d.iteration_id, d.phase, d.duration_ms FROM {dur} d {join}{where}", params)
            for r in c.fetchall():
                rows.durations.setdefault(self._uuid(r["iteration_id"]), {})[r["phase"]] = float(r["duration_ms"])
            token_filter = f"m.metric LIKE {ph}"
            c.execute(
                f"SELECT m.iteration_id, m.metric, m.total FROM {met} m JOIN {cur} c ON c.id = m.iteration_id"
                f"{where}{' AND ' if where else ' WHERE '}{token_filter}",
                [*params, "%_tokens"],
            )
            for r in c.fetchall():
                rows.tokens.setdefault(self._uuid(r["iteration_id"]), {})[r["metric"]] = float(self._total(r["total"]))
        return rows

    # -- queries ------------------------------------------------------------------------------

    def current_phase(self, iteration_id: UUID) -> CurrentPhase:
        """The current-phase row of one iteration."""
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_current_one, (self._db_id(iteration_id),))
            row = c.fetchone()
        if row is None:
            raise IterationNotFoundError(iteration_id)
        return self._current_row(row)

    def iterations(
        self,
        agent: str | None = None,
        phase: str | None = None,
        status: Status | str | None = None,
        limit: int = 1000,
    ) -> list[CurrentPhase]:
        """Current-phase rows, newest first, filtered by agent, phase and status."""
        check_filter_text("agent", agent)
        check_filter_text("phase", phase)
        check_filter_text("status", None if status is None else str(status))
        conditions, params = [], []
        for column, value in (("agent_id", agent), ("phase", phase), ("status", status)):
            if value is not None:
                conditions.append(f"{column} = {self._placeholder}")
                params.append(str(value))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"{self.statements.select_current}{where} ORDER BY started_at DESC, id LIMIT {self._placeholder}"
        with self._transaction(commit=False) as c:
            c.execute(sql, [*params, limit])
            return [self._current_row(row) for row in c.fetchall()]

    def metrics(self, iteration_id: UUID) -> list[IterationMetric]:
        """Metric totals of one iteration."""
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_metrics_of, (self._db_id(iteration_id),))
            return [
                IterationMetric(
                    iteration_id=self._uuid(r["iteration_id"]), metric=r["metric"], total=self._total(r["total"])
                )
                for r in c.fetchall()
            ]

    def agent_metrics(self, agent: str | None = None) -> list[AgentMetric]:
        """Per-agent totals and how many iterations reported each metric (all agents when `agent` is None)."""
        check_filter_text("agent", agent)
        with self._transaction(commit=False) as c:
            if agent is None:
                c.execute(self.statements.select_all_agent_metrics)
            else:
                c.execute(self.statements.select_agent_metrics, (agent,))
            return [self._agent_row(r, r["agent_id"]) for r in c.fetchall()]

    def overall_metrics(self) -> list[AgentMetric]:
        """Totals across all agents (`agent_id` is None)."""
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_overall_metrics)
            return [self._agent_row(r, None) for r in c.fetchall()]

    def phase_durations(self, iteration_id: UUID) -> list[PhaseDuration]:
        """Time one iteration spent in each phase it entered (the current stay not yet closed)."""
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_durations_of, (self._db_id(iteration_id),))
            return [
                PhaseDuration(
                    iteration_id=self._uuid(r["iteration_id"]),
                    phase=r["phase"],
                    duration_ms=float(r["duration_ms"]),
                    visits=int(r["visits"]),
                )
                for r in c.fetchall()
            ]

    # -- rows -----------------------------------------------------------------------------------

    @property
    def _placeholder(self) -> str:
        return "%s"

    def _agent_row(self, row: Any, agent_id: str | None) -> AgentMetric:
        return AgentMetric(
            agent_id=agent_id, metric=row["metric"], total=self._total(row["total"]), iterations=int(row["iterations"])
        )

    def _current_row(self, row: Any) -> CurrentPhase:
        data = {column: row[column] for column in CURRENT_COLUMNS}
        data["id"] = self._uuid(data["id"])
        for column in ("phase_entered_at", "started_at", "finished_at", "updated_at"):
            data[column] = self._time(data[column])
        return CurrentPhase.model_validate(data)

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

    cas_reset: str
    select_position: str

    def rows(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Every view table's rows, for comparing a view with a rebuild (tests, verify)."""
        for table in self.statements.tables:
            with self._transaction(commit=False) as c:
                c.execute(f"SELECT * FROM {table}")  # fixed table names
                yield table, [dict(row) for row in c.fetchall()]
