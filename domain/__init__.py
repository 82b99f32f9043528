"""itertrack's domain: the Iteration aggregate, its rules and errors, and the tracker service."""

from itertrack.domain.model.errors import (
    ChangeIdReusedError,
    ConcurrencyError,
    DuplicateIterationError,
    InvalidInputError,
    InvalidIterationIdError,
    InvalidMetricError,
    IterationError,
    IterationFinishedError,
    IterationNotFoundError,
    OutcomeUnknownError,
    PhaseNameCollisionError,
    RecordAlreadySavedError,
    StoreConfigError,
    StoreError,
    StoreNotMigratedError,
    StorePermissionError,
    StoreReplacedError,
    StoreUnavailableError,
    UnknownPhaseError,
)
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.phases import Phase, PhaseCatalog, Status
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.model.state import IterationState, PhaseEntry
from itertrack.domain.model.usage import LLMUsage
from itertrack.domain.service.clock import Clock, SystemClock
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.domain.service.wiring import TrackerPorts

__all__ = [
    "ChangeIdReusedError",
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
    "OutcomeUnknownError",
    "PerformanceTracker",
    "Phase",
    "PhaseCatalog",
    "PhaseEntry",
    "PhaseNameCollisionError",
    "RecordAlreadySavedError",
    "Status",
    "StoreConfigError",
    "StoreError",
    "StoreNotMigratedError",
    "StorePermissionError",
    "StoreReplacedError",
    "StoreUnavailableError",
    "SystemClock",
    "TrackerPorts",
    "UnknownPhaseError",
]
