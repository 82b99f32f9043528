"""itertrack's domain: the Iteration aggregate, its rules and errors, and the tracker service."""

from itertrack.domain.clock import Clock, SystemClock
from itertrack.domain.errors import (
    ConcurrencyError,
    DuplicateIterationError,
    InvalidInputError,
    InvalidIterationIdError,
    InvalidMetricError,
    IterationError,
    IterationFinishedError,
    IterationNotFoundError,
    RecordAlreadySavedError,
    StoreConfigError,
    StoreError,
    StoreNotMigratedError,
    StoreUnavailableError,
    UnknownPhaseError,
)
from itertrack.domain.iteration import Iteration
from itertrack.domain.phases import Phase, PhaseCatalog, Status
from itertrack.domain.records import IterationRecord
from itertrack.domain.state import IterationState, PhaseEntry
from itertrack.domain.tracker import PerformanceTracker
from itertrack.domain.usage import LLMUsage

__all__ = [
    "Clock",
    "ConcurrencyError",
    "DuplicateIterationError",
    "InvalidInputError",
    "InvalidIterationIdError",
    "InvalidMetricError",
    "Iteration",
    "IterationError",
    "IterationFinishedError",
    "IterationNotFoundError",
    "IterationRecord",
    "IterationState",
    "LLMUsage",
    "PerformanceTracker",
    "Phase",
    "PhaseCatalog",
    "PhaseEntry",
    "RecordAlreadySavedError",
    "Status",
    "StoreConfigError",
    "StoreError",
    "StoreNotMigratedError",
    "StoreUnavailableError",
    "SystemClock",
    "UnknownPhaseError",
]
