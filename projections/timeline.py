"""Phase stays of one iteration, from its events: the data of a phase timeline (Gantt) chart."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict

from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.phases import TERMINAL_PHASES


class Stay(BaseModel):
    """One stay in a phase, from entering it to entering the next (open while the iteration runs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phase: str
    start: AwareDatetime
    end: AwareDatetime | None


def phase_stays(events: Sequence[Iteration.Event]) -> list[Stay]:
    """Every stay of the iteration in a non-terminal phase, in order."""
    stays: list[Stay] = []
    phase: str | None = None
    entered: datetime | None = None
    for event in events:
        if isinstance(event, Iteration.Started):
            phase, entered = "initializing", event.timestamp
        elif isinstance(event, Iteration.PhaseChanged) and phase is not None and entered is not None:
            stays.append(Stay(phase=phase, start=entered, end=event.timestamp))
            phase, entered = event.phase, event.timestamp
    if phase is not None and entered is not None and phase not in TERMINAL_PHASES:
        stays.append(Stay(phase=phase, start=entered, end=None))
    return stays
