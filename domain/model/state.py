"""Read-side snapshot of one iteration, as the tracker returns it."""

from __future__ import annotations

from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.phases import Status


class PhaseEntry(BaseModel):
    """One entry into a phase, with the version of the event that made it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phase: str
    entered_at: AwareDatetime
    version: int


class IterationState(BaseModel):
    """Where an iteration is and what it has cost so far."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID
    agent_id: str
    iteration_number: int
    phase: str
    status: Status
    error: str | None
    metrics: dict[str, int | float]
    phase_history: tuple[PhaseEntry, ...]
    saved: bool
    version: int
    started_at: AwareDatetime
    updated_at: AwareDatetime
    finished_at: AwareDatetime | None
    # Changes of this iteration still waiting in the local spool (the store was unreachable).
    spooled_changes: int = 0

    @classmethod
    def of(cls, iteration: Iteration, spooled_changes: int = 0) -> IterationState:
        """Snapshot an aggregate (copies its mutable parts)."""
        return cls(
            id=iteration.id,
            agent_id=iteration.agent_id,
            iteration_number=iteration.iteration_number,
            phase=iteration.phase,
            status=iteration.status,
            error=iteration.error,
            metrics=dict(iteration.metrics),
            phase_history=tuple(
                PhaseEntry(phase=v.phase, entered_at=v.entered_at, version=v.version) for v in iteration.phase_history
            ),
            saved=iteration.saved,
            version=iteration.version,
            started_at=iteration.created_on,
            updated_at=iteration.modified_on,
            finished_at=iteration.modified_on if iteration.is_finished else None,
            spooled_changes=spooled_changes,
        )
