"""The analytics report, computed from read-model rows: per phase, failures, per agent with trends.

Its JSON shape is versioned by `schema_version` and documented in the README; add fields, never
rename or remove them, without a new version.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from itertrack.domain.model.metrics import tokens_metric
from itertrack.domain.model.phases import TERMINAL_PHASES, Status
from itertrack.projections.rows import CurrentPhase
from itertrack.projections.trend import fit_trend

SCHEMA_VERSION = "itertrack.report/1"
TOP_ERRORS = 5


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimeStats(_Model):
    """Milliseconds spent in a phase by the iterations that entered it."""

    total: float
    mean: float
    p50: float
    p95: float
    max: float


class PhaseReport(_Model):
    """One phase: how many iterations entered it, their time in it, and the tokens it used."""

    phase: str
    iterations: int
    time_ms: TimeStats
    tokens_total: float
    tokens_per_iteration: float


class ErrorCount(_Model):
    """One error message and how often it ended an iteration."""

    error: str
    count: int


class PhaseFailures(_Model):
    """Failures in one phase, with the most frequent messages first."""

    phase: str
    count: int
    errors: tuple[ErrorCount, ...]


class SlopeFit(_Model):
    """A least-squares slope per iteration number (`slope`, in the measure's unit per iteration number), its 95%
    interval (`low`, `high`: t over the residuals, None with fewer than 3 points), the points fitted (`n`), and
    whether the interval excludes 0 (`clear`): a slope whose interval spans 0 says nothing about the direction."""

    slope: float
    low: float | None
    high: float | None
    n: int
    clear: bool


class Trend(_Model):
    """How an agent's finished iterations change with the iteration number: least-squares slopes of wall time (ms),
    tokens and success (1 completed, 0 failed) with their 95% intervals (projections/trend.py; None: fewer than 2
    iteration numbers), and the success rates of the first and second halves."""

    iterations: int
    time_ms_per_iteration_number: SlopeFit | None
    tokens_per_iteration_number: SlopeFit | None
    success_per_iteration_number: SlopeFit | None
    success_rate_first_half: float | None
    success_rate_second_half: float | None


class AgentReport(_Model):
    """One agent's iterations, success rate, totals and trend."""

    agent_id: str
    iterations: int
    completed: int
    failed: int
    running: int
    success_rate: float | None
    time_ms: float
    tokens: float
    trend: Trend


class Totals(_Model):
    """Iterations in the report by status."""

    iterations: int
    completed: int
    failed: int
    running: int
    success_rate: float | None
    time_ms: float
    tokens: float


class Filters(_Model):
    """What the report was restricted to (iterations started in [since, until))."""

    agent: str | None
    since: AwareDatetime | None
    until: AwareDatetime | None


class Report(_Model):
    """The whole report."""

    schema_version: str
    generated_at: AwareDatetime
    filters: Filters
    totals: Totals
    phases: tuple[PhaseReport, ...]
    failures: tuple[PhaseFailures, ...]
    agents: tuple[AgentReport, ...]


@dataclass
class ReportRows:
    """The read-model rows a report needs: iterations, their phase durations and token totals."""

    iterations: list[CurrentPhase] = field(default_factory=list)
    durations: dict[UUID, dict[str, float]] = field(default_factory=dict)
    tokens: dict[UUID, dict[str, float]] = field(default_factory=dict)


def time_stats(values: Sequence[float]) -> TimeStats:
    """Total, mean, median, 95th percentile (inclusive quantiles) and max; 0 for no values."""
    if not values:
        return TimeStats(total=0.0, mean=0.0, p50=0.0, p95=0.0, max=0.0)
    p95 = statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]
    return TimeStats(
        total=round(sum(values), 3),
        mean=round(statistics.fmean(values), 3),
        p50=round(statistics.median(values), 3),
        p95=round(p95, 3),
        max=round(max(values), 3),
    )


def _rate(completed: int, failed: int) -> float | None:
    return None if completed + failed == 0 else round(completed / (completed + failed), 4)


def _slope(xs: Sequence[float], ys: Sequence[float]) -> SlopeFit | None:
    fit = fit_trend(xs, ys)
    if fit is None:
        return None
    low = None if fit.low is None else round(fit.low, 6)
    high = None if fit.high is None else round(fit.high, 6)
    return SlopeFit(slope=round(fit.slope, 6), low=low, high=high, n=fit.n, clear=fit.clear)


def trend_of(finished: Sequence[tuple[int, float, float, bool]]) -> Trend:
    """Trend of (iteration number, time ms, tokens, succeeded) over finished iterations."""
    ordered = sorted(finished, key=lambda f: f[0])
    xs = [float(f[0]) for f in ordered]
    half = len(ordered) // 2
    first = [f[3] for f in ordered[:half]]
    second = [f[3] for f in ordered[half:]]
    first_rate = round(sum(first) / len(first), 4) if first else None
    second_rate = round(sum(second) / len(second), 4) if second and first else None
    return Trend(
        iterations=len(ordered),
        time_ms_per_iteration_number=_slope(xs, [f[1] for f in ordered]),
        tokens_per_iteration_number=_slope(xs, [f[2] for f in ordered]),
        success_per_iteration_number=_slope(xs, [1.0 if f[3] else 0.0 for f in ordered]),
        success_rate_first_half=first_rate,
        success_rate_second_half=second_rate,
    )


def _phase_order(rows: ReportRows, known: Iterable[str]) -> list[str]:
    seen = {p for per in rows.durations.values() for p in per} - TERMINAL_PHASES
    order = [p for p in known if p in seen]
    return order + sorted(seen - set(order))


def build_report(
    rows: ReportRows, known_phases: Iterable[str], generated_at: AwareDatetime, filters: Filters
) -> Report:
    """The report of the given rows; phases in `known_phases` order, then any others alphabetically."""
    phases = _phase_order(rows, known_phases)
    token_names = {tokens_metric(p) for p in phases}

    def iteration_time(iid: UUID) -> float:
        return sum(rows.durations.get(iid, {}).values())

    def iteration_tokens(iid: UUID) -> float:
        return sum(v for name, v in rows.tokens.get(iid, {}).items() if name in token_names)

    phase_reports = []
    for phase in phases:
        spent = [per[phase] for per in rows.durations.values() if phase in per]
        tokens = sum(t.get(tokens_metric(phase), 0) for t in rows.tokens.values())
        phase_reports.append(
            PhaseReport(
                phase=phase,
                iterations=len(spent),
                time_ms=time_stats(spent),
                tokens_total=tokens,
                tokens_per_iteration=round(tokens / len(spent), 3) if spent else 0.0,
            )
        )

    failures: dict[str, Counter[str]] = defaultdict(Counter)
    for it in rows.iterations:
        if it.status is Status.FAILED:
            failures[it.failed_in or "unknown"][it.error or ""] += 1
    failure_reports = tuple(
        PhaseFailures(
            phase=phase,
            count=sum(errors.values()),
            errors=tuple(
                ErrorCount(error=e, count=n)
                for e, n in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ERRORS]
            ),
        )
        for phase, errors in sorted(failures.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    )

    by_agent: dict[str, list[CurrentPhase]] = defaultdict(list)
    for it in rows.iterations:
        by_agent[it.agent_id].append(it)
    agent_reports = []
    for agent_id in sorted(by_agent):
        its = by_agent[agent_id]
        status = Counter(it.status for it in its)
        finished = [
            (it.iteration_number, iteration_time(it.id), iteration_tokens(it.id), it.status is Status.COMPLETED)
            for it in its
            if it.status is not Status.RUNNING
        ]
        agent_reports.append(
            AgentReport(
                agent_id=agent_id,
                iterations=len(its),
                completed=status[Status.COMPLETED],
                failed=status[Status.FAILED],
                running=status[Status.RUNNING],
                success_rate=_rate(status[Status.COMPLETED], status[Status.FAILED]),
                time_ms=round(sum(iteration_time(it.id) for it in its), 3),
                tokens=sum(iteration_tokens(it.id) for it in its),
                trend=trend_of(finished),
            )
        )

    status = Counter(it.status for it in rows.iterations)
    totals = Totals(
        iterations=len(rows.iterations),
        completed=status[Status.COMPLETED],
        failed=status[Status.FAILED],
        running=status[Status.RUNNING],
        success_rate=_rate(status[Status.COMPLETED], status[Status.FAILED]),
        time_ms=round(sum(iteration_time(it.id) for it in rows.iterations), 3),
        tokens=sum(iteration_tokens(it.id) for it in rows.iterations),
    )
    return Report(
        schema_version=SCHEMA_VERSION,
        generated_at=generated_at,
        filters=filters,
        totals=totals,
        phases=tuple(phase_reports),
        failures=failure_reports,
        agents=tuple(agent_reports),
    )
