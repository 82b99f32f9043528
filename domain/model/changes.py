"""The tracker's changes as data: applied to a loaded iteration at once, or kept while its version is unknown.

A change to an iteration this process has not loaded cannot be made into events during an outage: the
next version is unknown. The tracker then keeps the change itself (a `DeferredChange`) in the spool, and
the forwarder applies it once the store answers. Each change carries the id its event will have, so a
forward that committed before a crash is recognised by that id and never applied twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.usage import LLMUsage

# Plain slotted dataclasses: one is made per tracked change (arguments already checked), and a pydantic
# model costs ~8 us to build even unvalidated; pydantic validates and dumps them inside a `DeferredChange`.


@dataclass(frozen=True, slots=True, kw_only=True)
class _Change:
    """What every change has and does."""

    # The id of the event this change makes: the same on every attempt, forward and re-forward.
    event_id: UUID

    def apply(self, iteration: Iteration, at: datetime) -> None:
        """Trigger this change's event on the iteration (raising the domain's typed errors)."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short line for `itertrack spool status`."""
        raise NotImplementedError

    def fingerprint(self) -> int:
        """The fingerprint of the event this change makes (`Iteration.Event.fingerprint`)."""
        raise NotImplementedError

    def fingerprints(self) -> tuple[int, ...]:
        """The fingerprints of every event this change may already have made (a retry of it is a no-op)."""
        return (self.fingerprint(),)


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseChange(_Change):
    """Enter `phase` (with `error` for `failed`); the phase is already checked against the catalog."""

    kind: Literal["phase"] = "phase"
    phase: str
    error: str | None = None

    def apply(self, iteration: Iteration, at: datetime) -> None:
        iteration.change_phase(self.phase, self.error, at, event_id=self.event_id)

    def describe(self) -> str:
        return f"phase {self.phase}"

    def fingerprint(self) -> int:
        return Iteration.PhaseChanged.fingerprint_of(phase=self.phase, error=self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsChange(_Change):
    """Add already-validated amounts to the running totals."""

    kind: Literal["metrics"] = "metrics"
    metrics: dict[str, int | float]

    def apply(self, iteration: Iteration, at: datetime) -> None:
        iteration.record_metrics(self.metrics, at, event_id=self.event_id)

    def describe(self) -> str:
        return "metrics " + ", ".join(sorted(self.metrics))

    def fingerprint(self) -> int:
        return Iteration.MetricsRecorded.fingerprint_of(metrics=self.metrics)


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMCallChange(_Change):
    """Record one LLM call (arguments already checked): the fields of `Iteration.LLMCallRecorded`."""

    kind: Literal["llm_call"] = "llm_call"
    phase: str
    provider: str = "anthropic"
    model: str | None = None
    usage: LLMUsage | None = None
    duration_ms: float | None = None
    request_id: str | None = None
    batch: bool = False
    inference_geo: str | None = None

    def _content(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in Iteration.LLMCallRecorded.content_fields}

    def apply(self, iteration: Iteration, at: datetime) -> None:
        iteration.record_llm_call(self._content(), at, event_id=self.event_id)

    def describe(self) -> str:
        return f"LLM call in {self.phase} ({self.model or 'model unknown'})"

    def fingerprint(self) -> int:
        return Iteration.LLMCallRecorded.fingerprint_of(**self._content())

    def fingerprints(self) -> tuple[int, ...]:
        """Also the `MetricsRecorded` that `record_usage` wrote before calls were events: a keyed call whose
        first try landed before an upgrade is recognised when retried after it."""
        if self.usage is None:
            return (self.fingerprint(),)
        legacy = Iteration.MetricsRecorded.fingerprint_of(metrics=self.usage.as_metrics(self.phase))
        return (self.fingerprint(), legacy)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSave(_Change):
    """The saving step: the record must belong to this iteration (same agent and number)."""

    kind: Literal["save"] = "save"
    agent_id: str
    iteration_number: int
    status: str

    def apply(self, iteration: Iteration, at: datetime) -> None:
        if iteration.agent_id != self.agent_id:
            raise InvalidInputError(
                "record.agent_id", self.agent_id, f"differs from the tracked iteration's {iteration.agent_id!r}"
            )
        if iteration.iteration_number != self.iteration_number:
            raise InvalidInputError(
                "record.iteration_number",
                self.iteration_number,
                f"differs from the tracked iteration's {iteration.iteration_number}",
            )
        iteration.mark_saved(self.status, at, event_id=self.event_id)

    def describe(self) -> str:
        return f"save record ({self.status})"

    def fingerprint(self) -> int:
        return Iteration.RecordSaved.fingerprint_of(status=self.status)


Change = Annotated[PhaseChange | MetricsChange | LLMCallChange | RecordSave, Field(discriminator="kind")]


class DeferredChange(BaseModel):
    """A change kept in the spool with the instant the host asked for it (its event's earliest timestamp)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: AwareDatetime
    change: Change
