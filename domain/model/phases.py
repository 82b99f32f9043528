"""The phase vocabulary from the seed, and the catalog a tracker checks phase names against."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

from itertrack.domain.model.errors import InvalidInputError, PhaseNameCollisionError, UnknownPhaseError
from itertrack.domain.model.usage import phase_metric_names

PHASE_NAME = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
MAX_PHASE_NAME = 64


class Phase(StrEnum):
    """Built-in phases, in the order the host visits them; the last two are terminal."""

    INITIALIZING = "initializing"
    SCAN_GENERATION = "scan_generation"
    SCAN_EXECUTION = "scan_execution"
    EXECUTION_GENERATION = "execution_generation"
    BACKTEST_EXECUTION = "backtest_execution"
    ANALYSIS = "analysis"
    COMPLETED = "completed"
    FAILED = "failed"


class Status(StrEnum):
    """Where an iteration stands as a whole: still running, or finished one way or the other."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL_PHASES: frozenset[str] = frozenset({Phase.COMPLETED, Phase.FAILED})


def status_of(phase: str) -> Status:
    """The status an iteration has while in `phase`."""
    if phase == Phase.COMPLETED:
        return Status.COMPLETED
    if phase == Phase.FAILED:
        return Status.FAILED
    return Status.RUNNING


def check_phase_name(name: object, field: str = "phase") -> str:
    """A phase name is snake_case ASCII, at most 64 characters."""
    if not isinstance(name, str):
        raise InvalidInputError(field, name, "must be a string")
    if len(name) > MAX_PHASE_NAME or not PHASE_NAME.fullmatch(name):
        raise InvalidInputError(field, name, f"must be snake_case ASCII of at most {MAX_PHASE_NAME} characters")
    return name


class PhaseCatalog:
    """The phases one tracker accepts: the built-in ones plus those its host registered.

    Raises `InvalidInputError` for a name that is not snake_case, and `PhaseNameCollisionError` when any metric
    name one phase writes (`usage.phase_metric_names`: `<phase>_time_ms`, `<phase>_tokens`, `<phase>_<kind>`)
    is also one another phase writes: `analysis_cache_read_input`'s `_tokens` would be `analysis`'s cache reads.
    """

    def __init__(self, extra: Iterable[str] = ()) -> None:
        names = [p.value for p in Phase]
        if isinstance(extra, str) or not isinstance(extra, Iterable):
            raise InvalidInputError("phases", extra, "must be a list of phase names")
        for name in extra:
            check_phase_name(name, field="phases")
            if name not in names:
                names.append(name)
        _refuse_overlapping_metrics(names)
        self._names = tuple(names)
        self._known = frozenset(names)

    @property
    def names(self) -> tuple[str, ...]:
        """All accepted phase names, built-in ones first."""
        return self._names

    def check(self, phase: object) -> str:
        """Return `phase` if it is accepted, else raise `UnknownPhaseError`."""
        if isinstance(phase, str) and phase in self._known:
            return str(phase)  # a `Phase` member becomes its plain value
        check_phase_name(phase)
        raise UnknownPhaseError("phase", phase, f"unknown phase; known: {', '.join(self._names)}")


def _refuse_overlapping_metrics(names: Iterable[str]) -> None:
    """Raise `PhaseNameCollisionError` for the first phase (in order) writing a metric name an earlier one writes."""
    owner: dict[str, str] = {}
    for name in names:
        for metric in phase_metric_names(name):
            other = owner.setdefault(metric, name)
            if other != name:
                raise PhaseNameCollisionError(name, other, metric)
