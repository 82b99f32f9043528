"""Documents about iterations: `status` rows, `show`, `history`, `replay`, `abandon`, and their shared parts."""

from __future__ import annotations

from uuid import UUID

from pydantic import JsonValue

from itertrack.adapters.documents.envelope import document
from itertrack.adapters.documents.types import Amount, Instant, Model, Usd
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.phases import Status
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.model.state import IterationState
from itertrack.projections.costing import CostReport
from itertrack.projections.rows import CurrentPhase


class IterationRow(Model):
    """Where one iteration is now: a `status` row (and the first fields of a board row)."""

    iteration_id: UUID
    agent_id: str
    iteration_number: int
    phase: str
    status: Status
    error: str | None
    # The phase it was in when it failed (None unless failed).
    failed_in: str | None
    phase_entered_at: Instant
    started_at: Instant
    updated_at: Instant
    finished_at: Instant | None
    # The iteration's version: how many events it has.
    version: int

    @classmethod
    def of(cls, row: CurrentPhase) -> IterationRow:
        """The document row of a read-model row."""
        return cls(
            iteration_id=row.id,
            agent_id=row.agent_id,
            iteration_number=row.iteration_number,
            phase=row.phase,
            status=row.status,
            error=row.error,
            failed_in=row.failed_in,
            phase_entered_at=row.phase_entered_at,
            started_at=row.started_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            version=row.last_version,
        )


class PhaseVisit(Model):
    """One entry into a phase (`phase_history`)."""

    phase: str
    entered_at: Instant
    version: int


class IterationDetail(Model):
    """One iteration's state (`show`, `replay`, `/api/iterations/{id}`): as of its latest or a chosen version;
    every field of an `IterationRow`, and its metric totals, phase history, whether its record is saved, and how
    many of its changes wait in this host's spool."""

    iteration_id: UUID
    agent_id: str
    iteration_number: int
    phase: str
    status: Status
    error: str | None
    failed_in: str | None
    phase_entered_at: Instant
    metrics: dict[str, Amount]
    phase_history: list[PhaseVisit]
    saved: bool
    version: int
    started_at: Instant
    updated_at: Instant
    finished_at: Instant | None
    spooled_changes: int

    @classmethod
    def of(cls, state: IterationState) -> IterationDetail:
        """The document form of a state (`id` becomes `iteration_id`)."""
        data = state.model_dump(mode="python")
        data["iteration_id"] = data.pop("id")
        history = state.phase_history
        data["phase_entered_at"] = history[-1].entered_at
        data["failed_in"] = history[-2].phase if state.status is Status.FAILED and len(history) > 1 else None
        return cls.model_validate(data)


class PhaseStay(Model):
    """One stay in a phase, from the events: entered at `entered_at`, left at `left_at` (None: still in it)."""

    phase: str
    version: int
    entered_at: Instant
    left_at: Instant | None
    time_ms: float | None


def timeline(state: IterationState) -> list[PhaseStay]:
    """The stays of `state`'s phase history, oldest first (the last one open: `left_at` and `time_ms` None)."""
    visits = list(state.phase_history)
    stays = []
    for index, visit in enumerate(visits):
        left = visits[index + 1].entered_at if index + 1 < len(visits) else None
        stayed = None if left is None else round((left - visit.entered_at).total_seconds() * 1000, 3)
        stays.append(
            PhaseStay(
                phase=visit.phase, version=visit.version, entered_at=visit.entered_at, left_at=left, time_ms=stayed
            )
        )
    return stays


class SavedRecord(Model):
    """The iteration record a host saved (`IterationRecord`, its `id` as `iteration_id`)."""

    iteration_id: UUID | None
    agent_id: str
    iteration_number: int
    strategy: JsonValue
    scan_results: JsonValue
    backtest_results: JsonValue
    analysis: JsonValue
    refinements: JsonValue
    manual_guidance: str | None
    iteration_status: str
    created_at: Instant | None

    @classmethod
    def of(cls, record: IterationRecord | None) -> SavedRecord | None:
        """The document form of a record (None stays None)."""
        if record is None:
            return None
        data = record.model_dump(mode="python")
        data["iteration_id"] = data.pop("id")
        return cls.model_validate(data)


class CostLine(Model):
    """The LLM calls of one group (`group`: the grouping's values), their tokens and dollars at their dates' prices.

    `usd` is None when no call of the group has a price; `complete` is false when some have none."""

    group: dict[str, str | None]
    calls: int
    tokens: int
    usd: Usd | None
    complete: bool
    unpriced_calls: int
    unpriced_tokens: int
    unpriced_models: list[str]
    unknown_usage_calls: int


class Cost(Model):
    """LLM cost grouped `by` some of phase, agent, provider, model, iteration; `table_version`: the prices used;
    `unattributed_tokens`: tokens in token metrics no recorded call explains."""

    table_version: str
    by: list[str]
    lines: list[CostLine]
    total: CostLine
    unattributed_tokens: int

    @classmethod
    def of(cls, report: CostReport) -> Cost:
        """The document form of a cost report."""
        return cls.model_validate(report.model_dump(mode="python"))


class Event(Model):
    """One event of an iteration: its version, time, name (`Started`, `PhaseChanged`, `MetricsRecorded`,
    `LLMCallRecorded`, `RecordSaved`, ...) and its own fields (`data`, as the event holds them)."""

    iteration_id: UUID
    version: int
    timestamp: Instant
    event: str
    data: dict[str, JsonValue]

    @classmethod
    def of(cls, event: Iteration.Event) -> Event:
        """The document form of a stored event."""
        fields = event.model_dump(
            mode="json", exclude={"originator_id", "originator_version", "timestamp", "originator_topic"}
        )
        return cls(
            iteration_id=event.originator_id,
            version=event.originator_version,
            timestamp=event.timestamp,
            event=type(event).__name__,
            data=fields,
        )


class StatusFilters(Model):
    """What `status` listed: by agent, phase, status, start time in [since, until), `stale` (the idle time given to
    --stale, as written), at most `limit` rows."""

    agent: str | None = None
    phase: str | None = None
    status: Status | None = None
    since: Instant | None = None
    until: Instant | None = None
    stale: str | None = None
    limit: int


@document("status", 1, "`itertrack status --json`: iterations and where each one is now, newest first.")
class StatusData(Model):
    """The filters and the listed iterations."""

    filters: StatusFilters
    iterations: list[IterationRow]


@document("show", 1, "`itertrack show ID --json`: one iteration's state, phase timeline, saved record and LLM cost.")
class ShowData(Model):
    """One iteration."""

    iteration: IterationDetail
    timeline: list[PhaseStay]
    record: SavedRecord | None
    cost: Cost


@document("history", 1, "`itertrack history ID --json`: one iteration's events, oldest first.")
class HistoryData(Model):
    """The events."""

    iteration_id: UUID
    events: list[Event]


class Requested(Model):
    """What `replay` was asked for: a version, an instant, or neither (the latest)."""

    version: int | None
    at: Instant | None


class AsOf(Model):
    """The event the replayed state is as of."""

    version: int
    timestamp: Instant


class SoFar(Model):
    """Totals so far: tokens (the `<phase>_tokens` sums) and milliseconds timed (the `<phase>_time_ms` sums)."""

    tokens: Amount
    time_ms: Amount


@document("replay", 1, "`itertrack replay ID --json`: the events up to a version or an instant, and the state then.")
class ReplayData(Model):
    """The replayed iteration."""

    iteration_id: UUID
    requested: Requested
    as_of: AsOf
    events: list[Event]
    iteration: IterationDetail
    so_far: SoFar


class Abandoned(Model):
    """An iteration `abandon` ended as failed: where it was, since when it had not changed, the error written."""

    iteration_id: UUID
    agent_id: str
    iteration_number: int
    phase: str
    since: Instant
    error: str


class Skipped(Model):
    """A listed iteration `abandon --stale` left alone, and why."""

    iteration_id: UUID
    reason: str


@document("abandon", 1, "`itertrack abandon --json`: the iterations ended as failed, and those skipped.")
class AbandonData(Model):
    """What was ended and what was not."""

    abandoned: list[Abandoned]
    skipped: list[Skipped]
