"""The read models: current phase, cumulative metrics, phase durations and LLM calls, as pydantic rows."""

from __future__ import annotations

from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.phases import Status


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CurrentPhase(_Row):
    """Where one iteration is now (one row per iteration)."""

    id: UUID
    agent_id: str
    iteration_number: int
    phase: str
    status: Status
    error: str | None
    phase_entered_at: AwareDatetime
    started_at: AwareDatetime
    finished_at: AwareDatetime | None
    updated_at: AwareDatetime
    last_version: int
    # The phase the iteration was in when it failed (None unless failed).
    failed_in: str | None = None


class IterationMetric(_Row):
    """One metric's running total for one iteration."""

    iteration_id: UUID
    metric: str
    total: int | float


class AgentMetric(_Row):
    """One metric's total over an agent's iterations (or over all agents, `agent_id=None`)."""

    agent_id: str | None
    metric: str
    total: int | float
    iterations: int


class PhaseDuration(_Row):
    """Time one iteration spent in one phase, from event timestamps, over all its stays."""

    iteration_id: UUID
    phase: str
    duration_ms: float
    visits: int


class LLMCallRow(_Row):
    """One LLM call (one `Iteration.LLMCallRecorded` event), as the `llm_calls` view keeps it.

    Token columns are the response's counts (0 when `usage_known` is false). The cache writes are split
    by lifetime: `cache_creation_5m_input_tokens` + `cache_creation_1h_input_tokens` ==
    `cache_creation_input_tokens` (all 5-minute writes when the response gave no split). `recorded_at` is
    the event's time, the date the call's prices are taken at.
    """

    iteration_id: UUID
    version: int
    agent_id: str
    phase: str
    provider: str
    model: str | None
    recorded_at: AwareDatetime
    usage_known: bool
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cache_creation_5m_input_tokens: int
    cache_creation_1h_input_tokens: int
    server_tool_use: dict[str, int]
    service_tier: str | None
    batch: bool
    inference_geo: str | None
    duration_ms: float | None
    request_id: str | None

    @classmethod
    def of(cls, event: Iteration.LLMCallRecorded, agent_id: str) -> LLMCallRow:
        """The row of one call event of an iteration of `agent_id`."""
        usage = event.usage
        return cls(
            iteration_id=event.originator_id,
            version=event.originator_version,
            agent_id=agent_id,
            phase=event.phase,
            provider=event.provider,
            model=event.model,
            recorded_at=event.timestamp,
            usage_known=usage is not None,
            input_tokens=0 if usage is None else usage.input_tokens,
            output_tokens=0 if usage is None else usage.output_tokens,
            cache_read_input_tokens=0 if usage is None else usage.cache_read_input_tokens,
            cache_creation_input_tokens=0 if usage is None else usage.cache_creation_input_tokens,
            cache_creation_5m_input_tokens=0 if usage is None else usage.cache_write_5m_tokens,
            cache_creation_1h_input_tokens=0 if usage is None else usage.cache_write_1h_tokens,
            server_tool_use={} if usage is None else dict(usage.server_tool_use),
            service_tier=None if usage is None else usage.service_tier,
            batch=event.batch,
            inference_geo=event.inference_geo,
            duration_ms=event.duration_ms,
            request_id=event.request_id,
        )

    @property
    def total_tokens(self) -> int:
        """Input, output and both cache counts: what the call added to `<phase>_tokens`."""
        return self.input_tokens + self.output_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens


class LLMUsageTotal(_Row):
    """Token totals of the LLM calls of one group: an iteration's (phase, provider, model), with
    `agent_id` None, an agent's (provider, model), with `iteration_id` and `phase` None, or an agent's
    (phase, provider, model), with `iteration_id` None.

    `calls` counts every call, `unknown_usage_calls` those whose response reported no usage (their tokens
    are not in the sums). Token fields as in `LLMCallRow`, summed.
    """

    iteration_id: UUID | None = None
    agent_id: str | None = None
    phase: str | None = None
    provider: str
    model: str | None
    calls: int
    unknown_usage_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cache_creation_5m_input_tokens: int
    cache_creation_1h_input_tokens: int

    @property
    def total_tokens(self) -> int:
        """Input, output and both cache counts."""
        return self.input_tokens + self.output_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens


class IterationCount(_Row):
    """How many iterations of one agent have one status."""

    agent_id: str
    status: Status
    iterations: int


class PhaseDurationBuckets(_Row):
    """The closed stays of one agent's iterations in one phase, as a cumulative histogram.

    `visits`: closed stays; `seconds`: their time; `buckets`: (upper bound in seconds, stays at most that
    long), bounds ascending, counts cumulative (the `+Inf` bucket is `visits`). Several closed stays of one
    iteration in one phase count at their mean (the views keep each phase's total, not each stay).
    """

    agent_id: str
    phase: str
    visits: int
    seconds: float
    buckets: tuple[tuple[float, int], ...]


class ReadModelPosition(_Row):
    """How far the read models have applied the event log, and how far the log goes."""

    applied: int
    latest: int

    @property
    def lag(self) -> int:
        """Notifications recorded but not yet applied."""
        return max(0, self.latest - self.applied)
