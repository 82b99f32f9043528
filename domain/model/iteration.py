"""The Iteration aggregate: one learning iteration of one agent, changed only by its events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, NamedTuple, cast
from uuid import UUID

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    OriginatorIDError,
    OriginatorVersionError,
)
from pydantic import BaseModel

from itertrack.domain.model.change_keys import is_keyed
from itertrack.domain.model.errors import (
    InvalidInputError,
    InvalidMetricError,
    IterationFinishedError,
    RecordAlreadySavedError,
)
from itertrack.domain.model.events import DomainEvent
from itertrack.domain.model.metrics import MAX_AMOUNT, Amount, add_metrics
from itertrack.domain.model.phases import TERMINAL_PHASES, Phase, Status, status_of
from itertrack.domain.model.text import check_error_message
from itertrack.domain.model.usage import LLMUsage


def _with_id(event_id: UUID | None) -> dict[str, UUID]:
    """The event's id when the caller fixed it (a deferred change), else the event makes a new one."""
    return {} if event_id is None else {"event_id": event_id}


def checked_error(phase: str, error: str | None) -> str | None:
    """The error message of a phase change: required for `failed`, refused for any other phase."""
    if phase == Phase.FAILED:
        if error is None:
            raise InvalidInputError("error", error, "is required when phase is 'failed'")
        return check_error_message(error)
    if error is not None:
        raise InvalidInputError("error", error, f"is only allowed with phase 'failed', not {phase!r}")
    return None


def _frozen(value: Any) -> Any:
    """A hashable form of an event field's value (a dict as its sorted items, a nested model as its fields)."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


class PhaseVisit(NamedTuple):
    """One entry into a phase: which, when, and at which version of the iteration."""

    phase: str
    entered_at: datetime
    version: int


class Iteration(BaseAggregate[UUID]):
    """One iteration's phases, error and metric totals; every change is an event."""

    class Event(DomainEvent, CanMutateAggregate[UUID]):
        """Base of the Iteration's events."""

        # The fields that make up what the event says (not when, nor which version): its fingerprint.
        content_fields: ClassVar[tuple[str, ...]] = ()

        @classmethod
        def fingerprint_of(cls, **content: Any) -> int:
            """A hash of what an event of this class with this content says (same within one process)."""
            return hash((cls.__name__, *(_frozen(content[name]) for name in cls.content_fields)))

        def fingerprint(self) -> int:
            """`fingerprint_of` this event's content."""
            return self.fingerprint_of(**{name: getattr(self, name) for name in self.content_fields})

        def mutate(self, aggregate: Any) -> Any:
            """Apply the event; an event of a keyed change is remembered by id (and fingerprint) as well.

            The library's `CanMutateAggregate.mutate`, inlined (this runs once per tracked change): raises its
            `OriginatorIDError` / `OriginatorVersionError` unless the event is the aggregate's next one.
            """
            originator_id = self.originator_id
            if originator_id is not aggregate.id and originator_id != aggregate.id:
                raise OriginatorIDError(originator_id, aggregate.id)
            next_version = aggregate.version + 1
            if self.originator_version != next_version:
                raise OriginatorVersionError(self.originator_version, next_version)
            self.apply(aggregate)  # before anything is set: it may raise
            aggregate.version = self.originator_version
            aggregate.modified_on = self.timestamp
            self._remember(aggregate)
            return aggregate

        def _remember(self, aggregate: Any) -> None:
            # The id of the event the iteration's state was last changed by: a change made on this state is
            # made on exactly this history (the spool's forwarder checks it before sending events as they are).
            event_id = self.event_id
            aggregate.last_event_id = event_id
            if is_keyed(event_id):
                aggregate.keyed_changes[event_id] = self.fingerprint()

    class Started(Event, CanInitAggregate[UUID]):
        """The iteration began, in phase `initializing`."""

        content_fields = ("agent_id", "iteration_number")
        originator_topic: str
        agent_id: str
        iteration_number: int

        def mutate(self, aggregate: Any) -> Any:
            """Make the aggregate (the library's `CanInitAggregate.mutate`) and remember this event."""
            created: Any = CanInitAggregate.mutate(self, aggregate)
            self._remember(created)
            return created

        def apply(self, aggregate: Any) -> None:
            aggregate.agent_id = self.agent_id
            aggregate.iteration_number = self.iteration_number
            aggregate.phase = Phase.INITIALIZING.value
            aggregate.error = None
            aggregate.metrics = {}
            aggregate.phase_history = [PhaseVisit(Phase.INITIALIZING.value, self.timestamp, self.originator_version)]
            aggregate.saved = False
            aggregate.keyed_changes = {}

    class PhaseChanged(Event):
        """The iteration entered `phase`; `error` is set exactly when the phase is `failed`."""

        content_fields = ("phase", "error")

        phase: str
        error: str | None = None

        def apply(self, aggregate: Any) -> None:
            aggregate.phase = self.phase
            aggregate.error = self.error
            aggregate.phase_history.append(PhaseVisit(self.phase, self.timestamp, self.originator_version))

    class MetricsRecorded(Event):
        """These amounts were added to the iteration's running metric totals."""

        content_fields = ("metrics",)

        metrics: dict[str, int | float]

        def apply(self, aggregate: Any) -> None:
            aggregate.metrics = add_metrics(aggregate.metrics, self.metrics)

    class LLMCallRecorded(Event):
        """One LLM call made in `phase`, with the usage its response reported; its tokens are added to the
        phase's token metrics (`<phase>_tokens` and the four per-kind ones, as `LLMUsage.as_metrics`).

        `provider` (`anthropic`), `model` as the response named it (None: not reported), `usage` (None: the
        response carried none; the call is counted, nothing is added), `duration_ms` (the call's wall time,
        when the host measured it), `request_id` (the provider's id of the response, when known), `batch`
        (sent through a batch API) and `inference_geo` (e.g. `us`), which the price of the call depends on.
        """

        content_fields = ("phase", "provider", "model", "usage", "duration_ms", "request_id", "batch", "inference_geo")

        phase: str
        provider: str = "anthropic"
        model: str | None = None
        usage: LLMUsage | None = None
        duration_ms: float | None = None
        request_id: str | None = None
        batch: bool = False
        inference_geo: str | None = None

        @property
        def usage_unknown(self) -> bool:
            """Whether the response reported no usage."""
            return self.usage is None

        def apply(self, aggregate: Any) -> None:
            if self.usage is not None:
                aggregate.metrics = add_metrics(aggregate.metrics, self.usage.as_metrics(self.phase))

    class RecordSaved(Event):
        """The host's saving step stored the iteration record under this iteration's id."""

        content_fields = ("status",)

        status: str

        def apply(self, aggregate: Any) -> None:
            aggregate.saved = True

    # Declared for type checkers; set by the events' apply methods.
    agent_id: str
    iteration_number: int
    phase: str
    error: str | None
    metrics: dict[str, Amount]
    phase_history: list[PhaseVisit]
    saved: bool
    last_event_id: UUID
    # The keyed changes applied (event id -> fingerprint): a retry of one is recognised, not applied again.
    keyed_changes: dict[UUID, int]

    def __init__(self) -> None:
        """State is set by `Started.apply`, so replay and creation share one code path."""

    @classmethod
    def start(
        cls, iteration_id: UUID, agent_id: str, iteration_number: int, at: datetime, event_id: UUID | None = None
    ) -> Iteration:
        """Begin a new iteration under `iteration_id` (arguments already validated)."""
        return cls._create(
            cls.Started,
            id=iteration_id,
            agent_id=agent_id,
            iteration_number=iteration_number,
            timestamp=at,
            **_with_id(event_id),
        )

    @property
    def status(self) -> Status:
        """Running until a terminal phase is reached."""
        return status_of(self.phase)

    @property
    def is_finished(self) -> bool:
        """Whether the iteration is in a terminal phase, after which nothing may change."""
        return self.phase in TERMINAL_PHASES

    def _refuse_if_finished(self, attempted: str) -> None:
        if self.is_finished:
            raise IterationFinishedError(self.id, self.phase, attempted)

    def take_events(self) -> list[Iteration.Event]:
        """The events triggered since the last call, oldest first (the aggregate forgets them)."""
        pending = self.pending_events
        taken = cast(list[Iteration.Event], pending.copy())
        pending.clear()
        return taken

    def trigger_event(self, event_class: type[CanMutateAggregate[UUID]], **kwargs: Any) -> None:
        """Make the next event of this iteration from `kwargs` (pydantic validates them), apply it, keep it pending.

        The library's `trigger_event` without what this aggregate does not use (explicit topics) and without
        copying `kwargs` (a fresh dict already): it runs once per tracked change. Raises pydantic's
        `ValidationError` for a bad field, and what the event's `apply` raises; nothing changes then.
        """
        kwargs["originator_id"] = self.id
        kwargs["originator_version"] = self.version + 1
        if kwargs.get("timestamp") is None:
            kwargs["timestamp"] = event_class.create_timestamp()
        try:
            new_event = event_class(**kwargs)
        except TypeError as e:
            msg = f"Can't construct event {event_class}: {e}"
            raise TypeError(msg) from None
        new_event.mutate(self)
        self.pending_events.append(new_event)

    def change_phase(self, phase: str, error: str | None, at: datetime, event_id: UUID | None = None) -> None:
        """Enter `phase` (already checked against the tracker's catalog); `failed` needs an error."""
        if self.phase in TERMINAL_PHASES:
            self._refuse_if_finished(f"phase change to {phase!r}")
        error = checked_error(phase, error)
        self.trigger_event(self.PhaseChanged, phase=phase, error=error, timestamp=at, **_with_id(event_id))

    def record_metrics(self, metrics: Mapping[str, Amount], at: datetime, event_id: UUID | None = None) -> None:
        """Add validated amounts to the running totals."""
        if self.phase in TERMINAL_PHASES:
            self._refuse_if_finished(f"metrics update {sorted(metrics)}")
        totals = self.metrics
        for name, amount in metrics.items():
            if totals.get(name, 0) + amount > MAX_AMOUNT:
                raise InvalidMetricError(f"metrics[{name!r}]", amount, f"would take the total past {MAX_AMOUNT}")
        if event_id is None:
            self.trigger_event(self.MetricsRecorded, metrics=dict(metrics), timestamp=at)
        else:
            self.trigger_event(self.MetricsRecorded, metrics=dict(metrics), timestamp=at, event_id=event_id)

    def record_llm_call(self, call: Mapping[str, Any], at: datetime, event_id: UUID | None = None) -> None:
        """Record one LLM call (the `LLMCallRecorded` fields, already validated); its tokens join the totals."""
        if self.phase in TERMINAL_PHASES:
            self._refuse_if_finished(f"LLM call in {call['phase']!r}")
        usage: LLMUsage | None = call.get("usage")
        if usage is not None:
            for name, amount in usage.as_metrics(call["phase"]).items():
                if self.metrics.get(name, 0) + amount > MAX_AMOUNT:
                    raise InvalidMetricError(f"usage ({name})", amount, f"would take the total past {MAX_AMOUNT}")
        self.trigger_event(self.LLMCallRecorded, **call, timestamp=at, **_with_id(event_id))

    def mark_saved(self, status: str, at: datetime, event_id: UUID | None = None) -> None:
        """Record that the saving step stored this iteration's record (once)."""
        self._refuse_if_finished("saving the iteration record")
        if self.saved:
            raise RecordAlreadySavedError(self.id)
        self.trigger_event(self.RecordSaved, status=status, timestamp=at, **_with_id(event_id))
