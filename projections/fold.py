"""Folds a batch of Iteration events into read-model changes; pure, so every store applies the same logic."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.metrics import Amount
from itertrack.domain.model.phases import TERMINAL_PHASES, status_of
from itertrack.projections.rows import CurrentPhase, LLMCallRow

MetricKey = tuple[UUID, str]
AgentKey = tuple[str, str]
DurationKey = tuple[UUID, str]
CallKey = tuple[UUID, int]


@dataclass(slots=True)
class StartedFact:
    """What the fold needs of an `Iteration.Started` (a catch-up may decode only this, see adapters/views/decode.py)."""

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    agent_id: str
    iteration_number: int


@dataclass(slots=True)
class PhaseChangedFact:
    """What the fold needs of an `Iteration.PhaseChanged`."""

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    phase: str
    error: str | None


@dataclass(slots=True)
class MetricsRecordedFact:
    """What the fold needs of an `Iteration.MetricsRecorded`."""

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    metrics: dict[str, Amount]


# What the fold takes: the events themselves, or the facts of the three commonest kinds.
FoldInput = Iteration.Event | StartedFact | PhaseChangedFact | MetricsRecordedFact

_OTHER, _STARTED, _PHASE, _METRICS, _CALL = range(5)
_KINDS: dict[type, int] = {
    Iteration.Started: _STARTED,
    StartedFact: _STARTED,
    Iteration.PhaseChanged: _PHASE,
    PhaseChangedFact: _PHASE,
    Iteration.MetricsRecorded: _METRICS,
    MetricsRecordedFact: _METRICS,
    Iteration.LLMCallRecorded: _CALL,
}


def _kind(event: FoldInput) -> int:
    """Which kind of event the fold has in hand (a dict look-up: about 5x quicker than an isinstance chain)."""
    kind = _KINDS.get(type(event))
    if kind is not None:
        return kind
    for cls, kind in _KINDS.items():  # a subclass of an event class
        if isinstance(event, cls):
            return kind
    return _OTHER


@dataclass
class LoadedState:
    """The rows a batch touches, as they stand in the store before it."""

    current: dict[UUID, CurrentPhase] = field(default_factory=dict)
    metrics: dict[MetricKey, Amount] = field(default_factory=dict)
    durations: dict[DurationKey, tuple[float, int]] = field(default_factory=dict)


@dataclass
class BatchChanges:
    """What a batch changes: new row values (current, metrics, durations) and additive agent deltas."""

    current: dict[UUID, CurrentPhase] = field(default_factory=dict)
    metrics: dict[MetricKey, Amount] = field(default_factory=dict)
    agent_deltas: dict[AgentKey, tuple[Amount, int]] = field(default_factory=dict)
    durations: dict[DurationKey, tuple[float, int]] = field(default_factory=dict)
    # New rows of `llm_calls` (one per call event; never changed once written), by (iteration, version).
    llm_calls: dict[CallKey, LLMCallRow] = field(default_factory=dict)
    applied_events: int = 0

    @property
    def is_empty(self) -> bool:
        """Whether the batch changes no row (the position may still move)."""
        return not (self.current or self.metrics or self.agent_deltas or self.durations or self.llm_calls)


def _ms(later: datetime, earlier: datetime) -> float:
    return max(0.0, (later - earlier).total_seconds() * 1000.0)


class BatchFold:
    """Applies events in log order to the loaded rows, remembering every row it changed."""

    def __init__(self, loaded: LoadedState) -> None:
        self.loaded = loaded
        self._changes = BatchChanges()
        # The current-phase rows read or changed so far, as mutable field dicts: an event updates its row in
        # place, and the pydantic row is built once per changed row when `changes` is read.
        self._rows: dict[UUID, dict[str, Any]] = {}
        self._stale: dict[UUID, None] = {}  # changed since `changes` was last read, in first-changed order

    @property
    def changes(self) -> BatchChanges:
        """What the events applied so far change (the current-phase rows brought up to date on each read)."""
        current = self._changes.current
        for iteration_id in self._stale:
            # model_construct: every value here was validated when its event was (model_copy is 3x slower).
            current[iteration_id] = CurrentPhase.model_construct(**self._rows[iteration_id])
        self._stale.clear()
        return self._changes

    def _row(self, iteration_id: UUID) -> dict[str, Any] | None:
        """The row of an iteration as the events so far left it (a field dict; None before it started)."""
        row = self._rows.get(iteration_id)
        if row is None:
            loaded = self.loaded.current.get(iteration_id)
            if loaded is None:
                return None
            row = self._rows[iteration_id] = dict(loaded.__dict__)
        return row

    def _metric(self, key: MetricKey) -> Amount | None:
        metrics = self._changes.metrics
        if key in metrics:
            return metrics[key]
        return self.loaded.metrics.get(key)

    def _add_stay(self, iteration_id: UUID, phase: str, ms: float, entered: bool) -> None:
        key = (iteration_id, phase)
        durations = self._changes.durations
        before = durations.get(key)
        spent, visits = before if before is not None else self.loaded.durations.get(key, (0.0, 0))
        durations[key] = (spent + ms, visits + (1 if entered else 0))

    def _count(self, row: dict[str, Any], event: Iteration.LLMCallRecorded) -> None:
        """An LLM call's row, and its tokens as the same token metrics `record_usage` added before calls were
        events (a call without usage adds none)."""
        if event.usage is not None:
            self._add_metrics(row, event.usage.as_metrics(event.phase))
        self._changes.llm_calls[(row["id"], event.originator_version)] = LLMCallRow.of(event, row["agent_id"])

    def _add_metrics(self, row: dict[str, Any], metrics: Mapping[str, Amount]) -> None:
        iteration_id, agent_id = row["id"], row["agent_id"]
        changed, agent_deltas = self._changes.metrics, self._changes.agent_deltas
        for name, amount in metrics.items():
            key = (iteration_id, name)
            before = self._metric(key)
            changed[key] = amount if before is None else before + amount
            total_delta, iterations_delta = agent_deltas.get((agent_id, name), (0, 0))
            agent_deltas[(agent_id, name)] = (total_delta + amount, iterations_delta + (1 if before is None else 0))

    def apply(self, event: FoldInput) -> None:
        """Apply one event; events at or below the row's last version were applied before and are skipped."""
        iteration_id = event.originator_id
        row = self._row(iteration_id)
        kind = _kind(event)
        if kind == _STARTED:
            started = cast(StartedFact, event)  # or an Iteration.Started: the same fields
            if row is not None:
                return
            self._rows[iteration_id] = {
                "id": iteration_id,
                "agent_id": started.agent_id,
                "iteration_number": started.iteration_number,
                "phase": "initializing",
                "status": status_of("initializing"),
                "error": None,
                "phase_entered_at": started.timestamp,
                "started_at": started.timestamp,
                "finished_at": None,
                "updated_at": started.timestamp,
                "last_version": started.originator_version,
                "failed_in": None,
            }
            self._stale[iteration_id] = None
            self._add_stay(iteration_id, "initializing", 0.0, entered=True)
            self._changes.applied_events += 1
            return
        if row is None or event.originator_version <= row["last_version"]:
            return
        if kind == _PHASE:
            changed = cast(PhaseChangedFact, event)
            phase = row["phase"]
            if phase not in TERMINAL_PHASES:
                self._add_stay(iteration_id, phase, _ms(changed.timestamp, row["phase_entered_at"]), entered=False)
            terminal = changed.phase in TERMINAL_PHASES
            if not terminal:
                self._add_stay(iteration_id, changed.phase, 0.0, entered=True)
            if changed.phase == "failed":
                row["failed_in"] = phase
            row["phase"] = changed.phase
            row["status"] = status_of(changed.phase)
            row["error"] = changed.error
            row["phase_entered_at"] = changed.timestamp
            row["finished_at"] = changed.timestamp if terminal else None
        elif kind == _METRICS:
            self._add_metrics(row, cast(MetricsRecordedFact, event).metrics)
        elif kind == _CALL:
            self._count(row, cast(Iteration.LLMCallRecorded, event))
        row["updated_at"] = event.timestamp
        row["last_version"] = event.originator_version
        self._stale[iteration_id] = None
        self._changes.applied_events += 1


def fold(events: Iterable[FoldInput], loaded: LoadedState) -> BatchChanges:
    """The changes a batch of events (in log order) makes to the loaded rows."""
    batch = BatchFold(loaded)
    for event in events:
        batch.apply(event)
    return batch.changes


def touched_ids(events: Iterable[FoldInput]) -> list[UUID]:
    """The iterations a batch touches, in first-seen order."""
    return list(dict.fromkeys(e.originator_id for e in events))
