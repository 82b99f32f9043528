"""SQL of the read-model tables, shared by the SQLite and PostgreSQL views.

Statements are built once from fixed table names (and, on PostgreSQL, a schema name validated
as an identifier by the store URL parser); every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The tracker's name in the library's tracking table: how far the views have applied its log.
APPLICATION_NAME = "PerformanceTracker"
CURRENT_COLUMNS = (
    "id",
    "agent_id",
    "iteration_number",
    "phase",
    "status",
    "error",
    "phase_entered_at",
    "started_at",
    "finished_at",
    "updated_at",
    "last_version",
    "failed_in",
)
VIEW_TABLES = ("iteration_current", "iteration_metrics", "agent_metrics", "iteration_phase_durations")
# View tables added after the first release: created by the migrate step, which then rebuilds the views.
ADDED_VIEW_TABLES = ("llm_calls",)
# One row per LLM call (`Iteration.LLMCallRecorded`), keyed by (iteration_id, version).
LLM_CALL_COLUMNS = (
    "iteration_id",
    "version",
    "agent_id",
    "phase",
    "provider",
    "model",
    "recorded_at",
    "usage_known",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_5m_input_tokens",
    "cache_creation_1h_input_tokens",
    "server_tool_use",
    "service_tier",
    "batch",
    "inference_geo",
    "duration_ms",
    "request_id",
)
# The token columns of `llm_calls` the usage queries sum.
LLM_TOKEN_COLUMNS = LLM_CALL_COLUMNS[8:14]
# The report's filters (by name) and their conditions on the current-phase table, aliased `c`.
# The filters of `llm_calls` (by name) and their conditions.
LLM_CALL_FILTERS = {
    "iteration": "iteration_id = %s",
    "agent": "agent_id = %s",
    "since": "recorded_at >= %s",
    "until": "recorded_at < %s",
}
REPORT_FILTERS = {"agent": "c.agent_id = %s", "since": "c.started_at >= %s", "until": "c.started_at < %s"}


@dataclass(frozen=True)
class ViewTypes:
    """Column types of one store."""

    id: str
    time: str
    total: str
    real: str
    count: str
    # How two totals are added and totals summed in SQL: exact at any size on both stores (PostgreSQL's
    # numeric; on SQLite functions of ours, adapters/views/exact_totals.py, since its integers stop at 2**63-1).
    add: str = "{a} + {b}"
    sum: str = "sum"


SQLITE_TYPES = ViewTypes(
    id="TEXT", time="TEXT", total="", real="REAL", count="INTEGER", add="itertrack_add({a}, {b})", sum="itertrack_sum"
)
POSTGRES_TYPES = ViewTypes(id="uuid", time="timestamptz", total="numeric", real="double precision", count="bigint")


class ViewStatements:
    """Every statement the views run, for one table prefix (`"schema".` or nothing) and placeholder."""

    def __init__(self, prefix: str, types: ViewTypes, placeholder: str) -> None:
        def q(sql: str) -> str:
            return sql.replace("%s", placeholder)

        cur, met, agt, dur, calls = (f"{prefix}{t}" for t in (*VIEW_TABLES, *ADDED_VIEW_TABLES))
        self.tables = (cur, met, agt, dur, calls)
        self.added_tables = [calls]
        self.placeholder = placeholder
        t = types
        self.create = [
            f"CREATE TABLE IF NOT EXISTS {cur} (id {t.id} PRIMARY KEY, agent_id text NOT NULL, "
            "iteration_number integer NOT NULL, phase text NOT NULL, status text NOT NULL, error text, "
            f"phase_entered_at {t.time} NOT NULL, started_at {t.time} NOT NULL, finished_at {t.time}, "
            f"updated_at {t.time} NOT NULL, last_version integer NOT NULL, failed_in text)",
            f"CREATE INDEX IF NOT EXISTS iteration_current_agent_idx ON {cur} (agent_id, iteration_number)",
            f"CREATE INDEX IF NOT EXISTS iteration_current_status_idx ON {cur} (status, phase)",
            f"CREATE TABLE IF NOT EXISTS {met} (iteration_id {t.id} NOT NULL, metric text NOT NULL, "
            f"total {t.total} NOT NULL, PRIMARY KEY (iteration_id, metric))",
            f"CREATE TABLE IF NOT EXISTS {agt} (agent_id text NOT NULL, metric text NOT NULL, "
            f"total {t.total} NOT NULL, iterations integer NOT NULL, PRIMARY KEY (agent_id, metric))",
            f"CREATE TABLE IF NOT EXISTS {dur} (iteration_id {t.id} NOT NULL, phase text NOT NULL, "
            f"duration_ms {t.real} NOT NULL, visits integer NOT NULL, PRIMARY KEY (iteration_id, phase))",
            f"CREATE TABLE IF NOT EXISTS {calls} (iteration_id {t.id} NOT NULL, version integer NOT NULL, "
            f"agent_id text NOT NULL, phase text NOT NULL, provider text NOT NULL, model text, "
            f"recorded_at {t.time} NOT NULL, usage_known integer NOT NULL, "
            + ", ".join(f"{column} {t.count} NOT NULL" for column in LLM_TOKEN_COLUMNS)
            + f", server_tool_use text NOT NULL, service_tier text, batch integer NOT NULL, inference_geo text, "
            f"duration_ms {t.real}, request_id text, PRIMARY KEY (iteration_id, version))",
            f"CREATE INDEX IF NOT EXISTS llm_calls_agent_idx ON {calls} (agent_id, model)",
            f"CREATE INDEX IF NOT EXISTS llm_calls_recorded_at_idx ON {calls} (recorded_at)",
        ]
        cols = ", ".join(CURRENT_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in CURRENT_COLUMNS[1:])
        values = ", ".join("%s" for _ in CURRENT_COLUMNS)
        self.upsert_current = q(
            f"INSERT INTO {cur} ({cols}) VALUES ({values}) ON CONFLICT (id) DO UPDATE SET {updates}"
        )
        self.upsert_metric = q(
            f"INSERT INTO {met} (iteration_id, metric, total) VALUES (%s, %s, %s) "
            "ON CONFLICT (iteration_id, metric) DO UPDATE SET total = excluded.total"
        )
        added = t.add.format(a=f"{agt}.total", b="excluded.total")
        self.add_agent_metric = q(
            f"INSERT INTO {agt} (agent_id, metric, total, iterations) VALUES (%s, %s, %s, %s) "
            f"ON CONFLICT (agent_id, metric) DO UPDATE SET total = {added}, "
            f"iterations = {agt}.iterations + excluded.iterations"
        )
        self.upsert_duration = q(
            f"INSERT INTO {dur} (iteration_id, phase, duration_ms, visits) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (iteration_id, phase) DO UPDATE SET duration_ms = excluded.duration_ms, "
            "visits = excluded.visits"
        )
        self.select_current_one = q(f"SELECT {cols} FROM {cur} WHERE id = %s")
        # Ids from the lowest to the highest id with a hex prefix (both bounds given): the primary key's index
        # serves it on both stores (PostgreSQL's uuid orders as its bytes, SQLite's ids are lowercase hex text).
        # Every phase an iteration is in or has been in (host-registered ones included).
        self.select_phases = f"SELECT phase FROM {cur} UNION SELECT phase FROM {dur} ORDER BY phase"
        self.select_ids_between = q(f"SELECT id FROM {cur} WHERE id >= %s AND id <= %s ORDER BY id LIMIT %s")
        self.select_current = f"SELECT {cols} FROM {cur}"
        self.select_metrics_of = q(
            f"SELECT iteration_id, metric, total FROM {met} WHERE iteration_id = %s ORDER BY metric"
        )
        self.select_agent_metrics = q(
            f"SELECT agent_id, metric, total, iterations FROM {agt} WHERE agent_id = %s ORDER BY metric"
        )
        self.select_all_agent_metrics = (
            f"SELECT agent_id, metric, total, iterations FROM {agt} ORDER BY agent_id, metric"
        )
        self.select_overall_metrics = (
            f"SELECT metric, {t.sum}(total) AS total, sum(iterations) AS iterations FROM {agt} "
            "GROUP BY metric ORDER BY metric"
        )
        self.select_durations_of = q(
            f"SELECT iteration_id, phase, duration_ms, visits FROM {dur} WHERE iteration_id = %s ORDER BY phase"
        )
        call_cols = ", ".join(LLM_CALL_COLUMNS)
        self.insert_llm_call = q(
            f"INSERT INTO {calls} ({call_cols}) VALUES ({', '.join('%s' for _ in LLM_CALL_COLUMNS)})"
        )
        self.select_llm_calls = f"SELECT {call_cols} FROM {calls}"
        sums = ", ".join(f"{t.sum}({column}) AS {column}" for column in LLM_TOKEN_COLUMNS)
        counts = f"count(*) AS calls, sum(1 - usage_known) AS unknown_usage_calls, {sums}"
        self.select_llm_usage_of = q(
            f"SELECT phase, provider, model, {counts} FROM {calls} WHERE iteration_id = %s "
            "GROUP BY phase, provider, model ORDER BY phase, provider, model"
        )
        self.select_agent_llm_usage = (
            f"SELECT agent_id, provider, model, {counts} FROM {calls} GROUP BY agent_id, provider, model "
            "ORDER BY agent_id, provider, model"
        )
        self.select_one_agent_llm_usage = q(
            f"SELECT agent_id, provider, model, {counts} FROM {calls} WHERE agent_id = %s "
            "GROUP BY agent_id, provider, model ORDER BY provider, model"
        )
        # Aggregates for metrics exporters (Prometheus): bounded groups, never one row per iteration.
        self.select_iteration_counts = (
            f"SELECT agent_id, status, count(*) AS iterations FROM {cur} GROUP BY agent_id, status "
            "ORDER BY agent_id, status"
        )
        self.select_phase_llm_usage = (
            f"SELECT agent_id, phase, provider, model, {counts} FROM {calls} "
            "GROUP BY agent_id, phase, provider, model ORDER BY agent_id, phase, provider, model"
        )
        self._cur, self._dur = cur, dur
        self._sum = t.sum
        self.select_all_metrics = f"SELECT iteration_id, metric, total FROM {met}"
        self.select_all_durations = f"SELECT iteration_id, phase, duration_ms, visits FROM {dur}"
        self.select_every_row = [(table, f"SELECT * FROM {table}") for table in self.tables]
        self.clear = [f"DELETE FROM {table}" for table in self.tables]
        # Columns added after the first release: (table, column, type); adding one empties the views.
        self.added_columns = [(cur, "failed_in", "text")]

    def select_iterations(self, filters: Sequence[str]) -> str:
        """Current-phase rows whose `filters` columns (fixed names) each equal a parameter, newest first, limited;
        the filters `since` and `until` are a range of `started_at` instead: [since, until)."""
        ph = self.placeholder
        ranges = {"since": f"started_at >= {ph}", "until": f"started_at < {ph}"}
        where = " AND ".join(ranges.get(column, f"{column} = {ph}") for column in filters)
        return f"{self.select_current}{' WHERE ' if where else ''}{where} ORDER BY started_at DESC, id LIMIT {ph}"

    def select_phase_duration_buckets(self, buckets: int) -> str:
        """Closed phase stays per (agent, phase): `visits` (closed stays), `duration_ms` (their time) and
        `le_0`..`le_{buckets-1}`, the stays at most as long as each bound (one parameter each, in ms).

        A duration row holds an iteration's time in a phase over all its stays; the stay the iteration is
        in now is counted in `visits` but not yet in `duration_ms`, so it is left out. An iteration with
        several closed stays in one phase counts each at their mean (the views keep no single stay).
        """
        ph = self.placeholder
        le = ", ".join(f"sum(CASE WHEN duration_ms <= {ph} * n THEN n ELSE 0 END) AS le_{i}" for i in range(buckets))
        return (
            f"SELECT agent_id, phase, sum(n) AS visits, sum(duration_ms) AS duration_ms{', ' if le else ''}{le} "
            f"FROM (SELECT c.agent_id AS agent_id, d.phase AS phase, d.duration_ms AS duration_ms, "
            f"d.visits - CASE WHEN c.phase = d.phase THEN 1 ELSE 0 END AS n "
            f"FROM {self._dur} d JOIN {self._cur} c ON c.id = d.iteration_id) stays "
            "WHERE n > 0 GROUP BY agent_id, phase ORDER BY agent_id, phase"
        )

    def select_llm_calls_where(self, filters: Sequence[str]) -> str:
        """`llm_calls` rows matching `filters` (names from `LLM_CALL_FILTERS`, one parameter each), oldest first."""
        conditions = [LLM_CALL_FILTERS[name].replace("%s", self.placeholder) for name in filters]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"{self.select_llm_calls}{where} ORDER BY recorded_at, iteration_id, version"

    def select_finished_tokens(self, filters: Sequence[str], metrics: int) -> str:
        """Finished iterations matching `filters` (names from `REPORT_FILTERS`), each with the sum of its totals of
        `metrics` metrics (their names are the first parameters, then the filters'), by agent and number."""
        ph = self.placeholder
        conditions = [REPORT_FILTERS[name].replace("%s", ph) for name in filters] + ["c.finished_at IS NOT NULL"]
        cur, met, _, _, _ = self.tables
        names = ", ".join(ph for _ in range(max(1, metrics)))
        return (
            "SELECT c.id, c.agent_id, c.iteration_number, c.status, c.started_at, c.finished_at, "
            f"(SELECT COALESCE(SUM(m.total), 0) FROM {met} m WHERE m.iteration_id = c.id AND m.metric IN ({names}))"
            f" AS tokens FROM {cur} c WHERE {' AND '.join(conditions)} ORDER BY c.agent_id, c.iteration_number, c.id"
        )

    def select_metrics_started(self, filters: Sequence[str]) -> str:
        """Metric totals (the exact sum of each metric's totals) and how many iterations reported each, over the
        iterations `filters` select (names from `REPORT_FILTERS`: agent, since, until), by metric."""
        conditions = [REPORT_FILTERS[name].replace("%s", self.placeholder) for name in filters]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        cur, met, *_ = self.tables
        return (
            f"SELECT m.metric AS metric, {self._sum}(m.total) AS total, count(*) AS iterations FROM {met} m "
            f"JOIN {cur} c ON c.id = m.iteration_id{where} GROUP BY m.metric ORDER BY m.metric"
        )

    def select_report(self, filters: Sequence[str]) -> tuple[str, str, str]:
        """The report's reads of iterations, their phase durations and their token totals, filtered by
        `filters` (names from `REPORT_FILTERS`); the token read takes one more parameter, its LIKE pattern."""
        conditions = [REPORT_FILTERS[name].replace("%s", self.placeholder) for name in filters]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        cur, met, _, dur, _ = self.tables
        return (
            f"{self.select_current} c{where} ORDER BY c.started_at, c.id",
            f"SELECT d.iteration_id, d.phase, d.duration_ms FROM {dur} d JOIN {cur} c ON c.id = d.iteration_id{where}",
            f"SELECT m.iteration_id, m.metric, m.total FROM {met} m JOIN {cur} c ON c.id = m.iteration_id"
            f"{where}{' AND ' if where else ' WHERE '}m.metric LIKE {self.placeholder}",
        )
