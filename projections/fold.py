"""Folds a batch of Iteration events into read-model changes; pure, so every store applies the same logic."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.metrics import Amount
from itertrack.domain.model.phases import TERMINAL_PHASES, status_of
from itertrack.domain.model.usage import token_metric_names
from itertrack.projections.rows import CurrentPhase, LLMCallRow

MetricKey = tuple[UUID, str]
AgentKey = tuple[str, str]
DurationKey = tuple[UUID, str]
CallKey = tuple[UUID, int]


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

    def _count(self, row: dict[str, Any], event: Iteration.MetricsRecorded | Iteration.LLMCallRecorded) -> None:
        """A metrics event's amounts; an LLM call's row, and its tokens as the same token metrics `record_usage`
        added before calls were events (a call without usage adds none)."""
        if isinstance(event, Iteration.MetricsRecorded):
            self._add_metrics(row, event.metrics)
            return
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

    def apply(self, event: Iteration.Event) -> None:
        """Apply one event; events at or below the row's last version were applied before and are skipped."""
        iteration_id = event.originator_id
        row = self._row(iteration_id)
        if isinstance(event, Iteration.Started):
            if row is not None:
                return
            self._rows[iteration_id] = {
                "id": iteration_id,
                "agent_id": event.agent_id,
                "iteration_number": event.iteration_number,
                "phase": "initializing",
                "status": status_of("initializing"),
                "error": None,
                "phase_entered_at": event.timestamp,
                "started_at": event.timestamp,
                "finished_at": None,
                "updated_at": event.timestamp,
                "last_version": event.originator_version,
                "failed_in": None,
            }
            self._stale[iteration_id] = None
            self._add_stay(iteration_id, "initializing", 0.0, entered=True)
            self._changes.applied_events += 1
            return
        if row is None or event.originator_version <= row["last_version"]:
            return
        if isinstance(event, Iteration.PhaseChanged):
            phase = row["phase"]
            if phase not in TERMINAL_PHASES:
                self._add_stay(iteration_id, phase, _ms(event.timestamp, row["phase_entered_at"]), entered=False)
            terminal = event.phase in TERMINAL_PHASES
            if not terminal:
                self._add_stay(iteration_id, event.phase, 0.0, entered=True)
            if event.phase == "failed":
                row["failed_in"] = phase
            row["phase"] = event.phase
            row["status"] = status_of(event.phase)
            row["error"] = event.error
            row["phase_entered_at"] = event.timestamp
            row["finished_at"] = event.timestamp if terminal else None
        elif isinstance(event, Iteration.MetricsRecorded | Iteration.LLMCallRecorded):
            self._count(row, event)
        row["updated_at"] = event.timestamp
        row["last_version"] = event.originator_version
        self._stale[iteration_id] = None
        self._changes.applied_events += 1


def fold(events: Iterable[Iteration.Event], loaded: LoadedState) -> BatchChanges:
    """The changes a batch of events (in log order) makes to the loaded rows."""
    batch = BatchFold(loaded)
    for event in events:
        batch.apply(event)
    return batch.changes


def touched_ids(events: Iterable[Iteration.Event]) -> list[UUID]:
    """The iterations a batch touches, in first-seen order."""
    return list(dict.fromkeys(e.originator_id for e in events))


def metric_keys(events: Iterable[Iteration.Event]) -> list[MetricKey]:
    """The (iteration, metric) rows a batch's metric events touch."""
    keys: dict[MetricKey, None] = {}
    for event in events:
        if isinstance(event, Iteration.MetricsRecorded):
            for name in event.metrics:
                keys[(event.originator_id, name)] = None
        elif isinstance(event, Iteration.LLMCallRecorded) and event.usage is not None:
            for name in token_metric_names(event.phase):
                keys[(event.originator_id, name)] = None
    return list(keys)


def phase_keys(events: Iterable[Iteration.Event], current: Mapping[UUID, CurrentPhase]) -> list[DurationKey]:
    """The (iteration, phase) duration rows a batch may touch: the phases entered, and each current one."""
    keys: dict[DurationKey, None] = {}
    for event in events:
        if isinstance(event, Iteration.PhaseChanged):
            keys[(event.originator_id, event.phase)] = None
        elif isinstance(event, Iteration.Started):
            keys[(event.originator_id, "initializing")] = None
    for row in current.values():
        keys[(row.id, row.phase)] = None
    return list(keys)
