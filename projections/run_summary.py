"""Per-phase and failure summary of a set of iterations, folded from their states (the demo's table)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from itertrack.domain.model.metrics import time_metric, tokens_metric
from itertrack.domain.model.phases import TERMINAL_PHASES, Status
from itertrack.domain.model.state import IterationState


class PhaseSummary(BaseModel):
    """How many iterations entered a phase, their mean time in it and the tokens it used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phase: str
    iterations: int
    mean_time_ms: float | None
    total_tokens: int


class FailureSummary(BaseModel):
    """How many iterations failed in a phase with one error message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phase: str
    error: str
    count: int


class RunSummary(BaseModel):
    """Totals over a set of iterations."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iterations: int
    completed: int
    failed: int
    running: int
    phases: tuple[PhaseSummary, ...]
    failures: tuple[FailureSummary, ...]


def summarize(states: Iterable[IterationState], phase_order: Iterable[str]) -> RunSummary:
    """Fold iteration states into per-phase rows (in `phase_order`) and failure counts."""
    states = list(states)
    entered: Counter[str] = Counter()
    time_sum: dict[str, float] = {}
    time_count: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    for state in states:
        visited = [p.phase for p in state.phase_history]
        for phase in set(visited) - TERMINAL_PHASES:
            entered[phase] += 1
            spent = state.metrics.get(time_metric(phase))
            if spent is not None:
                time_sum[phase] = time_sum.get(phase, 0.0) + spent
                time_count[phase] += 1
            tokens[phase] += int(state.metrics.get(tokens_metric(phase), 0))
        if state.status is Status.FAILED:
            failed_in = visited[-2] if len(visited) >= 2 else visited[-1]
            failures[(failed_in, state.error or "")] += 1
    rows = tuple(
        PhaseSummary(
            phase=phase,
            iterations=entered[phase],
            mean_time_ms=round(time_sum[phase] / time_count[phase], 1) if time_count[phase] else None,
            total_tokens=tokens[phase],
        )
        for phase in phase_order
        if entered[phase]
    )
    failure_rows = tuple(
        FailureSummary(phase=phase, error=error, count=count)
        for (phase, error), count in sorted(failures.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    by_status = Counter(s.status for s in states)
    return RunSummary(
        iterations=len(states),
        completed=by_status[Status.COMPLETED],
        failed=by_status[Status.FAILED],
        running=by_status[Status.RUNNING],
        phases=rows,
        failures=failure_rows,
    )
