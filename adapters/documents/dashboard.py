"""Documents of the dashboard's HTTP API: `/api/board`, `/api/iterations/{id}`, `/api/agents`, `/api/failures`,
`/healthz`, and the error answer. The live stream's (`/events`) `iteration` messages are `BoardRow`s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from pydantic import Field

from itertrack.adapters.documents.analytics import Filters
from itertrack.adapters.documents.envelope import document
from itertrack.adapters.documents.iterations import (
    Cost,
    Event,
    IterationDetail,
    IterationRow,
    PhaseStay,
    SavedRecord,
    timeline,
)
from itertrack.adapters.documents.types import Amount, Instant, Model, Usd
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.state import IterationState


class BoardRow(IterationRow):
    """A live board's row: an `IterationRow` with its tokens and dollars so far (`usd` None: no priced call), the
    same as text, the time in its phase (running) or its wall time (finished) as text, and whether it is stale."""

    tokens: int
    usd: Usd | None
    usd_text: str
    time_in_phase_text: str
    stale: bool


@document("board", 1, "`/api/board`: the live board's running iterations, recent finishes and recent failures.")
class BoardData(Model):
    """The board; `position`: the log position the rows are current to (the live stream sends what comes after)."""

    position: int
    server_time: Instant
    stale_after_s: Amount
    filters: Filters
    running: list[BoardRow]
    running_not_shown: int
    completed: list[BoardRow]
    failed: list[BoardRow]


class LLMCall(Model):
    """One LLM call of an iteration: its event's version and time, model, tokens, dollars (None: no price)."""

    version: int
    timestamp: Instant
    phase: str
    provider: str
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    tokens: int | None
    usd: Usd | None
    duration_ms: float | None
    request_id: str | None


@document("iteration", 1, "`/api/iterations/{id}`: one iteration as of a version or instant (now when neither).")
class IterationPageData(Model):
    """The iteration, its phase timeline, events and LLM calls up to `version`, their cost, the saved record;
    `replaying` when `version` is not the latest."""

    iteration: IterationDetail
    version: int
    latest_version: int
    replaying: bool
    timeline: list[PhaseStay]
    events: list[Event]
    llm_calls: list[LLMCall]
    cost: Cost
    record: SavedRecord | None

    @classmethod
    def of(cls, page: dict[str, Any], events: Sequence[Iteration.Event]) -> IterationPageData:
        """The document of the iteration page's data (`Dashboard.iteration`) and the events it shows."""
        state = IterationState.model_validate(page["iteration"])
        calls = [
            LLMCall.model_validate(
                {**{k: v for k, v in row.items() if k not in ("at", "kind", "usd_text")}, "timestamp": row["at"]}
            )
            for row in page["events"]
            if row["kind"] == "LLMCallRecorded"
        ]
        record = page["record"]
        if record is not None:
            record = {**record, "iteration_id": record["id"]}
            del record["id"]
        return cls(
            iteration=IterationDetail.of(state),
            version=page["version"],
            latest_version=page["latest_version"],
            replaying=page["replaying"],
            timeline=timeline(state),
            events=[Event.of(e) for e in events if e.originator_version <= state.version],
            llm_calls=calls,
            cost=Cost.model_validate(page["cost"]),
            record=None if record is None else SavedRecord.model_validate(record),
        )


class Point(Model):
    """One finished iteration on a measure's chart: its number, its value, the rolling median (or mean) there."""

    x: int
    y: float
    smooth: float


class TrendEnd(Model):
    """An end of the drawn trend line."""

    x: int
    y: float


class TrendFit(Model):
    """The least-squares slope per iteration number, its 95% interval (t over the residuals), the points it is
    fitted on, whether the interval excludes 0 (`clear`), and the ends of the line drawn."""

    slope: float
    low: float | None
    high: float | None
    n: int
    clear: bool
    start: TrendEnd
    end: TrendEnd


class Measure(Model):
    """One measure over iteration number (`key`: time, tokens, cost or success), in `unit`."""

    key: str
    title: str
    unit: str
    window: int
    smoothing: str
    points: list[Point]
    trend: TrendFit | None
    verdict: str


class AgentSeries(Model):
    """One agent's finished iterations: counts, `success_rate` (0 to 1), dollars (None: no priced call), measures."""

    agent_id: str
    iterations: int
    completed: int
    failed: int
    success_rate: float | None
    usd: Usd | None
    measures: list[Measure]


@document("agents", 1, "`/api/agents`: per agent, time, tokens, cost and success over iteration number, with trends.")
class AgentsData(Model):
    """The agents (sorted by id) and the filters."""

    filters: Filters
    agents: list[AgentSeries]

    @classmethod
    def of(cls, page: dict[str, Any]) -> AgentsData:
        """The document of the agents page's data (`Dashboard.agents`)."""
        agents = []
        for a in page["agents"]:
            measures = []
            for m in a["measures"]:
                trend = m["trend"]
                if trend is not None:
                    trend = {**{k: v for k, v in trend.items() if k not in ("from", "to")}}
                    trend.update(start=m["trend"]["from"], end=m["trend"]["to"])
                measures.append(Measure.model_validate({**m, "trend": trend}))
            finished = a["completed"] + a["failed"]
            agents.append(
                AgentSeries(
                    agent_id=a["agent_id"],
                    iterations=a["iterations"],
                    completed=a["completed"],
                    failed=a["failed"],
                    success_rate=a["completed"] / finished if finished else None,
                    usd=a["total_usd"],
                    measures=measures,
                )
            )
        return cls(filters=Filters.model_validate(page["filters"]), agents=agents)


class FailedIteration(Model):
    """An iteration behind a failure row."""

    iteration_id: UUID
    agent_id: str
    iteration_number: int


class FailureGroup(Model):
    """Failures in one phase with one error: how many, the newest iterations behind them, how many more."""

    phase: str
    error: str
    count: int
    iterations: list[FailedIteration]
    not_shown: int


@document("failures", 1, "`/api/failures`: failed iterations by phase and error, most frequent first.")
class FailuresData(Model):
    """How many failed, and the groups."""

    filters: Filters
    failed: int
    groups: list[FailureGroup]


@document("health", 1, "`/healthz`: the read models' position and the log's, and the live feed's.")
class HealthData(Model):
    """Positions are notification ids of the log (0: empty); `behind` = log_position - views_position."""

    ok: bool
    views_position: int
    log_position: int
    behind: int
    live_clients: int
    live_position: int


@document("error", 1, "An `/api/` (or `/healthz`, `/events`) request that failed: the HTTP status and why.")
class ErrorData(Model):
    """`error`: one line naming the field and the value when the request was at fault."""

    status: int = Field(ge=400, le=599)
    error: str
