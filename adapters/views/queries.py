"""Reading the views: queries, the report's rows and a consistent snapshot (the read side of `ViewTables`)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any, NamedTuple
from uuid import UUID

from itertrack.adapters.views.exact_totals import from_db
from itertrack.adapters.views.sql import (
    APPLICATION_NAME,
    CURRENT_COLUMNS,
    LLM_CALL_COLUMNS,
    LLM_TOKEN_COLUMNS,
    ViewStatements,
)
from itertrack.domain.model.errors import IterationNotFoundError
from itertrack.domain.model.metrics import Amount
from itertrack.domain.model.phases import Status
from itertrack.domain.model.text import check_filter_text
from itertrack.projections.report import ReportRows
from itertrack.projections.rows import (
    AgentMetric,
    CurrentPhase,
    IterationCount,
    IterationMetric,
    LLMCallRow,
    LLMUsageTotal,
    PhaseDuration,
    PhaseDurationBuckets,
)
from itertrack.projections.verification import ReadModelState


class FinishedTokens(NamedTuple):
    """A finished iteration and the sum of its token metrics (`ViewQueries.finished_tokens`)."""

    id: UUID
    agent_id: str
    iteration_number: int
    status: Status
    started_at: datetime
    finished_at: datetime
    tokens: float


class ViewQueries(ABC):
    """Store-neutral queries of the view tables; subclasses bring the connection, the types and the id lists."""

    statements: ViewStatements
    select_position: str

    # -- store specifics -------------------------------------------------------------------

    @abstractmethod
    def _transaction(self, *, commit: bool) -> AbstractContextManager[Any]:
        """A cursor in one transaction, committed when `commit`, else rolled back."""

    @abstractmethod
    def _where_in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A `column IN (...)` condition and its parameters."""

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
        return from_db(value)  # SQLite: past its 64-bit integers a total is decimal text

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
            c.execute(s.select_all_metrics)
            for r in c.fetchall():
                state.metrics[(self._uuid(r["iteration_id"]), r["metric"])] = self._total(r["total"])
            c.execute(s.select_all_agent_metrics)
            for r in c.fetchall():
                state.agents[(r["agent_id"], r["metric"])] = (float(self._total(r["total"])), int(r["iterations"]))
            c.execute(s.select_all_durations)
            for r in c.fetchall():
                state.durations[(self._uuid(r["iteration_id"]), r["phase"])] = (
                    float(r["duration_ms"]),
                    int(r["visits"]),
                )
            c.execute(s.select_llm_calls)
            for r in c.fetchall():
                call = self._llm_call_row(r)
                state.llm_calls[(call.iteration_id, call.version)] = call
        return position, state

    # -- report -------------------------------------------------------------------------------

    def report_rows(
        self, agent: str | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> ReportRows:
        """Iterations started in [since, until) (of one agent), their phase durations and token totals."""
        check_filter_text("agent", agent)
        given = {"agent": agent, "since": self._db_time(since), "until": self._db_time(until)}
        filters = [name for name, value in given.items() if value is not None]
        params = [given[name] for name in filters]
        select_iterations, select_durations, select_tokens = self.statements.select_report(filters)
        rows = ReportRows()
        with self._snapshot_transaction() as c:
            c.execute(select_iterations, params)
            rows.iterations = [self._current_row(r) for r in c.fetchall()]
            c.execute(select_durations, params)
            for r in c.fetchall():
                rows.durations.setdefault(self._uuid(r["iteration_id"]), {})[r["phase"]] = float(r["duration_ms"])
            c.execute(select_tokens, [*params, "%_tokens"])
            for r in c.fetchall():
                rows.tokens.setdefault(self._uuid(r["iteration_id"]), {})[r["metric"]] = float(self._total(r["total"]))
        return rows

    def finished_tokens(
        self,
        token_metrics: Sequence[str],
        agent: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[FinishedTokens]:
        """Finished iterations started in [since, until) (of one agent), each with the sum of its `token_metrics`
        totals, by agent and iteration number: one row per iteration (the dashboard's trends)."""
        check_filter_text("agent", agent)
        given = {"agent": agent, "since": self._db_time(since), "until": self._db_time(until)}
        filters = [name for name, value in given.items() if value is not None]
        names = list(token_metrics) or [""]
        with self._transaction(commit=False) as c:
            c.execute(
                self.statements.select_finished_tokens(filters, len(names)), [*names, *(given[f] for f in filters)]
            )
            return [
                FinishedTokens(
                    self._uuid(r["id"]),
                    r["agent_id"],
                    int(r["iteration_number"]),
                    Status(r["status"]),
                    self._time(r["started_at"]) or datetime.min.replace(tzinfo=UTC),
                    self._time(r["finished_at"]) or datetime.min.replace(tzinfo=UTC),
                    float(self._total(r["tokens"])),
                )
                for r in c.fetchall()
            ]

    # -- queries ------------------------------------------------------------------------------

    def current_phase(self, iteration_id: UUID) -> CurrentPhase:
        """The current-phase row of one iteration."""
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_current_one, (self._db_id(iteration_id),))
            row = c.fetchone()
        if row is None:
            raise IterationNotFoundError(iteration_id)
        return self._current_row(row)

    def phases(self) -> list[str]:
        """The names of every phase an iteration is in or has been in, sorted (a full scan of two view tables)."""
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_phases)
            return [str(row["phase"]) for row in c.fetchall()]

    def ids_with_prefix(self, prefix: str, limit: int = 6) -> list[UUID]:
        """Ids of the iterations in the current-phase table whose 32 hex digits start with `prefix` (1-32
        lowercase hex digits, no dashes; `ValueError` otherwise), in id order, at most `limit`."""
        if not 0 < len(prefix) <= 32 or prefix.strip("0123456789abcdef"):
            raise ValueError(f"not a lowercase hex prefix: {prefix!r}")
        low, high = (UUID(prefix.ljust(32, pad)) for pad in "0f")
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_ids_between, (self._db_id(low), self._db_id(high), limit))
            return [self._uuid(row["id"]) for row in c.fetchall()]

    def iterations(
        self,
        agent: str | None = None,
        phase: str | None = None,
        status: Status | str | None = None,
        limit: int = 1000,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[CurrentPhase]:
        """Current-phase rows, newest first, filtered by agent, phase and status, started in [since, until)."""
        check_filter_text("agent", agent)
        check_filter_text("phase", phase)
        check_filter_text("status", None if status is None else str(status))
        given = {
            "agent_id": agent,
            "phase": phase,
            "status": None if status is None else str(status),
            "since": self._db_time(since),
            "until": self._db_time(until),
        }
        filters = [column for column, value in given.items() if value is not None]
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_iterations(filters), [*(given[f] for f in filters), limit])
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

    def metrics_started(
        self, agent: str | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> list[AgentMetric]:
        """Metric totals over the iterations (of one agent) started in [since, until), and how many of them
        reported each metric, by metric (`agent_id` is `agent`); a join of the per-iteration totals, not the
        per-agent table, so it costs a scan of the selected iterations' metrics."""
        check_filter_text("agent", agent)
        given = {"agent": agent, "since": self._db_time(since), "until": self._db_time(until)}
        filters = [name for name, value in given.items() if value is not None]
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_metrics_started(filters), [given[name] for name in filters])
            return [self._agent_row(r, agent) for r in c.fetchall()]

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

    def llm_calls(
        self,
        iteration_id: UUID | None = None,
        *,
        agent: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[LLMCallRow]:
        """Every LLM call (one row per call) of one iteration, or of one agent, recorded in [since, until),
        oldest first (all of them when nothing is given). For pricing each call at its own date."""
        check_filter_text("agent", agent)
        given = {
            "iteration": None if iteration_id is None else self._db_id(iteration_id),
            "agent": agent,
            "since": self._db_time(since),
            "until": self._db_time(until),
        }
        filters = [name for name, value in given.items() if value is not None]
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_llm_calls_where(filters), [given[name] for name in filters])
            return [self._llm_call_row(r) for r in c.fetchall()]

    def llm_usage(self, iteration_id: UUID) -> list[LLMUsageTotal]:
        """One iteration's LLM calls summed per (phase, provider, model): calls, calls without usage, tokens."""
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_llm_usage_of, (self._db_id(iteration_id),))
            rows = [self._usage_row(r, iteration_id=iteration_id) for r in c.fetchall()]
        return sorted(rows, key=lambda r: (r.phase or "", r.provider, r.model or ""))

    def agent_llm_usage(self, agent: str | None = None) -> list[LLMUsageTotal]:
        """LLM calls summed per (agent, provider, model) over the agent's iterations (every agent when None)."""
        check_filter_text("agent", agent)
        with self._transaction(commit=False) as c:
            if agent is None:
                c.execute(self.statements.select_agent_llm_usage)
            else:
                c.execute(self.statements.select_one_agent_llm_usage, (agent,))
            rows = [self._usage_row(r, agent_id=r["agent_id"]) for r in c.fetchall()]
        return sorted(rows, key=lambda r: (r.agent_id or "", r.provider, r.model or ""))

    # -- aggregates (for metrics exporters) -----------------------------------------------------

    def iteration_counts(self) -> list[IterationCount]:
        """How many iterations each agent has in each status, by agent then status."""
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_iteration_counts)
            return [
                IterationCount(agent_id=r["agent_id"], status=r["status"], iterations=int(r["iterations"]))
                for r in c.fetchall()
            ]

    def phase_duration_buckets(self, bounds: Sequence[float]) -> list[PhaseDurationBuckets]:
        """Closed phase stays per (agent, phase) counted into cumulative buckets with upper `bounds` (seconds,
        ascending, finite): one row per (agent, phase) with at least one closed stay. See `PhaseDurationBuckets`."""
        bounds = [float(b) for b in bounds]
        if any(b2 <= b1 for b1, b2 in pairwise(bounds)):
            raise ValueError(f"bucket bounds must ascend: {bounds}")
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_phase_duration_buckets(len(bounds)), [b * 1000.0 for b in bounds])
            return [
                PhaseDurationBuckets(
                    agent_id=r["agent_id"],
                    phase=r["phase"],
                    visits=int(r["visits"]),
                    seconds=float(r["duration_ms"]) / 1000.0,
                    buckets=tuple((b, int(r[f"le_{i}"])) for i, b in enumerate(bounds)),
                )
                for r in c.fetchall()
            ]

    def phase_llm_usage(self) -> list[LLMUsageTotal]:
        """LLM calls summed per (agent, phase, provider, model) over every iteration."""
        with self._transaction(commit=False) as c:
            c.execute(self.statements.select_phase_llm_usage)
            rows = [
                self._usage_row(r, agent_id=r["agent_id"]).model_copy(update={"phase": r["phase"]})
                for r in c.fetchall()
            ]
        return sorted(rows, key=lambda r: (r.agent_id or "", r.phase or "", r.provider, r.model or ""))

    # -- rows -----------------------------------------------------------------------------------

    def _llm_call_row(self, row: Any) -> LLMCallRow:
        data = {column: row[column] for column in LLM_CALL_COLUMNS}
        data["iteration_id"] = self._uuid(data["iteration_id"])
        data["recorded_at"] = self._time(data["recorded_at"])
        data["usage_known"] = bool(data["usage_known"])
        data["batch"] = bool(data["batch"])
        data["server_tool_use"] = json.loads(data["server_tool_use"])
        return LLMCallRow.model_validate(data)

    def _usage_row(self, row: Any, **key: Any) -> LLMUsageTotal:
        sums = {column: int(self._total(row[column])) for column in LLM_TOKEN_COLUMNS}
        return LLMUsageTotal(
            **key,
            phase=row["phase"] if "iteration_id" in key else None,
            provider=row["provider"],
            model=row["model"],
            calls=int(row["calls"]),
            unknown_usage_calls=int(row["unknown_usage_calls"]),
            **sums,
        )

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

    def rows(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Every view table's rows, for comparing a view with a rebuild (tests, verify)."""
        for table, select in self.statements.select_every_row:
            with self._transaction(commit=False) as c:
                c.execute(select)
                yield table, [dict(row) for row in c.fetchall()]
