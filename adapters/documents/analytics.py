"""Documents of statistics over many iterations: `demo`, `report`, `metrics`, and the parts they share.

The same statistic has the same name everywhere: `iterations`, `completed`, `failed`, `running`, `success_rate`
(completed / finished, 0 to 1), `tokens` (a count), `time_ms_*` (milliseconds), `phase`, `error`, `count`.
"""

from __future__ import annotations

from uuid import UUID

from itertrack.adapters.documents.envelope import document
from itertrack.adapters.documents.iterations import Cost
from itertrack.adapters.documents.types import Amount, Instant, Model
from itertrack.domain.model.phases import Status
from itertrack.projections.costing import CostReport
from itertrack.projections.report import Report
from itertrack.projections.rows import AgentMetric
from itertrack.projections.run_summary import RunSummary


class Filters(Model):
    """What the iterations were selected by (None: not filtered): agent, status, and [since, until) on their
    start time."""

    agent: str | None = None
    status: Status | None = None
    since: Instant | None = None
    until: Instant | None = None


class Counts(Model):
    """How many iterations, by status; `success_rate` = completed / (completed + failed), None when none finished."""

    iterations: int
    completed: int
    failed: int
    running: int
    success_rate: float | None


class Totals(Counts):
    """`Counts`, with the milliseconds spent in phases and the tokens used."""

    time_ms: float
    tokens: int


class PhaseCounts(Model):
    """One phase: how many iterations entered it, the tokens used in it, their mean milliseconds in it."""

    phase: str
    iterations: int
    tokens: int
    time_ms_mean: float | None


class PhaseStats(PhaseCounts):
    """`PhaseCounts`, with tokens per iteration and the distribution of milliseconds in the phase."""

    tokens_per_iteration: float
    time_ms_total: float
    time_ms_p50: float
    time_ms_p95: float
    time_ms_max: float


class ErrorCount(Model):
    """One error message and how many failures had it."""

    error: str
    count: int


class PhaseFailures(Model):
    """Failures in one phase (`count`), by error message, most frequent first."""

    phase: str
    count: int
    errors: list[ErrorCount]


def _rate(completed: int, failed: int) -> float | None:
    return None if completed + failed == 0 else completed / (completed + failed)


@document("demo", 1, "`itertrack demo --json`: what the simulated learning loop tracked.")
class DemoData(Model):
    """The demo's store (password hidden), its totals, per-phase counts, failures and the iterations' ids."""

    store: str
    totals: Counts
    phases: list[PhaseCounts]
    failures: list[PhaseFailures]
    iteration_ids: list[UUID]
    failed_iteration_ids: list[UUID]

    @classmethod
    def of(cls, store: str, summary: RunSummary, ids: list[UUID], failed: list[UUID]) -> DemoData:
        """The document of a demo run."""
        by_phase: dict[str, list[ErrorCount]] = {}
        for f in summary.failures:  # most frequent first
            by_phase.setdefault(f.phase, []).append(ErrorCount(error=f.error, count=f.count))
        failures = sorted(
            (
                PhaseFailures(phase=p, count=sum(e.count for e in errors), errors=errors)
                for p, errors in by_phase.items()
            ),
            key=lambda f: (-f.count, f.phase),
        )
        return cls(
            store=store,
            totals=Counts(
                iterations=summary.iterations,
                completed=summary.completed,
                failed=summary.failed,
                running=summary.running,
                success_rate=_rate(summary.completed, summary.failed),
            ),
            phases=[
                PhaseCounts(phase=p.phase, iterations=p.iterations, tokens=p.total_tokens, time_ms_mean=p.mean_time_ms)
                for p in summary.phases
            ],
            failures=failures,
            iteration_ids=ids,
            failed_iteration_ids=failed,
        )


class SlopeFit(Model):
    """A least-squares slope per iteration number, its 95% interval (`low`, `high`; None with fewer than 3 points),
    the points fitted (`n`) and whether the interval excludes 0 (`clear`)."""

    slope: float
    low: float | None
    high: float | None
    n: int
    clear: bool


class AgentTrend(Model):
    """Least-squares slopes over iteration numbers of an agent's finished iterations (wall time in ms, tokens,
    success as 1/0), each with its 95% interval (None: too few), and the success rates of the first and second
    halves. A direction is only claimed where `clear` (the interval excludes 0)."""

    iterations: int
    time_ms_per_iteration_number: SlopeFit | None
    tokens_per_iteration_number: SlopeFit | None
    success_per_iteration_number: SlopeFit | None
    success_rate_first_half: float | None
    success_rate_second_half: float | None


class AgentTotals(Totals):
    """One agent's `Totals` and trend."""

    agent_id: str
    trend: AgentTrend


@document("report", 1, "`itertrack report --json`: where time, tokens and dollars go, failures, agents' trends.")
class ReportData(Model):
    """The report: totals, per phase, failures by phase, per agent, and the LLM cost in four groupings
    (`by_phase`, `by_agent`, `by_model`, `by_iteration`)."""

    generated_at: Instant
    filters: Filters
    totals: Totals
    phases: list[PhaseStats]
    failures: list[PhaseFailures]
    agents: list[AgentTotals]
    cost: dict[str, Cost]

    @classmethod
    def of(cls, report: Report, costs: dict[str, CostReport]) -> ReportData:
        """The document of a report and its cost sections."""
        data = report.model_dump(mode="python")
        return cls(
            generated_at=report.generated_at,
            filters=Filters(agent=report.filters.agent, since=report.filters.since, until=report.filters.until),
            totals=Totals.model_validate(data["totals"]),
            phases=[
                PhaseStats(
                    phase=p.phase,
                    iterations=p.iterations,
                    tokens=round(p.tokens_total),
                    tokens_per_iteration=p.tokens_per_iteration,
                    time_ms_mean=p.time_ms.mean,
                    time_ms_total=p.time_ms.total,
                    time_ms_p50=p.time_ms.p50,
                    time_ms_p95=p.time_ms.p95,
                    time_ms_max=p.time_ms.max,
                )
                for p in report.phases
            ],
            failures=[PhaseFailures.model_validate(f) for f in data["failures"]],
            agents=[AgentTotals.model_validate(a) for a in data["agents"]],
            cost={name: Cost.of(c) for name, c in costs.items()},
        )


class MetricTotal(Model):
    """One metric's total over the iterations of one agent (or of all agents: `agent_id` None), and how many
    iterations recorded it."""

    agent_id: str | None
    metric: str
    total: Amount
    iterations: int


@document("metrics", 1, "`itertrack metrics --json`: cumulative metric totals, of all agents or one.")
class MetricsData(Model):
    """The totals, and the filters they are over (a range: iterations started in it)."""

    filters: Filters
    metrics: list[MetricTotal]

    @classmethod
    def of(cls, filters: Filters, rows: list[AgentMetric]) -> MetricsData:
        """The document of the `metrics` rows."""
        return cls(filters=filters, metrics=[MetricTotal.model_validate(r.model_dump(mode="python")) for r in rows])
