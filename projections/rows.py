"""The read models: current phase, cumulative metrics and phase durations, as pydantic rows."""

from __future__ import annotations

from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from itertrack.domain.model.phases import Status


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CurrentPhase(_Row):
    """Where one iteration is now (one row per iteration)."""

    id: UUID
    agent_id: str
    iteration_number: int
    phase: str
    status: Status
    error: str | None
    phase_entered_at: AwareDatetime
    started_at: AwareDatetime
    finished_at: AwareDatetime | None
    updated_at: AwareDatetime
    last_version: int
    # The phase the iteration was in when it failed (None unless failed).
    failed_in: str | None = None


class IterationMetric(_Row):
    """One metric's running total for one iteration."""

    iteration_id: UUID
    metric: str
    total: int | float


class AgentMetric(_Row):
    """One metric's total over an agent's iterations (or over all agents, `agent_id=None`)."""

    agent_id: str | None
    metric: str
    total: int | float
    iterations: int


class PhaseDuration(_Row):
    """Time one iteration spent in one phase, from event timestamps, over all its stays."""

    iteration_id: UUID
    phase: str
    duration_ms: float
    visits: int


class ReadModelPosition(_Row):
    """How far the read models have applied the event log, and how far the log goes."""

    applied: int
    latest: int

    @property
    def lag(self) -> int:
        """Notifications recorded but not yet applied."""
        return max(0, self.latest - self.applied)
