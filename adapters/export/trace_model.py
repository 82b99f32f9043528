"""One finished iteration's events as a trace: a pure mapping, no OpenTelemetry SDK, no I/O.

The trace (`iteration_trace`):

    invoke_agent {agent_id}          root: Started .. the terminal PhaseChanged
      {phase}                        one per phase visit: its PhaseChanged (Started for `initializing`) .. the next
        chat {model}                 one per LLMCallRecorded in that visit: (timestamp - duration_ms) .. timestamp

Ids are ours and stable: the trace id is the iteration's UUID (its 128 bits), each span id the first nonzero 8 bytes
of SHA-256 over a role and the event id that opened the span, so exporting the same history again gives the same
ids. Times are the events' timestamps in integer nanoseconds since the Unix epoch. Attribute names are in
`genai` (OpenTelemetry GenAI conventions, see its `SEMCONV_VERSION`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from itertrack.adapters.export import genai
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.phases import TERMINAL_PHASES, Phase
from itertrack.projections.cost import Priced, price_call
from itertrack.projections.costing import Call, CostLine, calls_of_events, cost_report
from itertrack.projections.pricing import PriceTable

AttributeValue = str | bool | int | float
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


class SpanKind(StrEnum):
    """The OpenTelemetry span kinds the trace uses."""

    INTERNAL = "internal"
    CLIENT = "client"


class IterationNotFinishedError(ValueError):
    """The events given end before the iteration reached a terminal phase (nothing to export yet)."""

    def __init__(self, iteration_id: UUID | None, phase: str | None) -> None:
        self.iteration_id = iteration_id
        self.phase = phase
        super().__init__(f"iteration {iteration_id} is not finished (phase {phase!r}): it has no trace yet")


@dataclass(frozen=True)
class SpanModel:
    """One span: ids as ints (64-bit span ids), times in ns since the epoch, `error` the status message when the
    span failed (None: status unset)."""

    name: str
    span_id: int
    parent_id: int | None
    start_ns: int
    end_ns: int
    kind: SpanKind
    attributes: Mapping[str, AttributeValue]
    error: str | None = None


@dataclass(frozen=True)
class TraceModel:
    """One iteration's trace: `trace_id` (128-bit int, the iteration's UUID) and its spans, root first."""

    trace_id: int
    spans: tuple[SpanModel, ...]

    @property
    def root(self) -> SpanModel:
        """The `invoke_agent` span."""
        return self.spans[0]


def trace_id_of(iteration_id: UUID) -> int:
    """The trace id of an iteration: its UUID's 128 bits (the same 32 hex digits)."""
    return iteration_id.int


def span_id_of(role: str, event_id: UUID) -> int:
    """A span id (64-bit, never 0) derived from a role (`invoke_agent`, `phase`, `chat`) and an event id."""
    digest = hashlib.sha256(f"{role}:{event_id}".encode()).digest()
    for start in range(0, len(digest), 8):
        value = int.from_bytes(digest[start : start + 8], "big")
        if value:
            return value
    return 1  # every 8-byte window of the digest was zero: never seen, but a span id may not be 0


def ns_of(at: datetime) -> int:
    """An aware datetime as integer nanoseconds since the Unix epoch (exact: datetimes hold microseconds)."""
    return ((at - EPOCH) // _ONE_US) * 1000


def error_type_of(message: str) -> str:
    """A low-cardinality `error.type` for a stored error message: `interrupted` / `cancelled` for the messages
    `failure_message` writes for those, else the conventions' `_OTHER`."""
    head = message.split(":", 1)[0]
    return head if head in ("interrupted", "cancelled") else genai.ERROR_TYPE_OTHER


@dataclass
class _Visit:
    phase: str
    opened_by: Iteration.Event
    ended_at: datetime | None = None
    ended_by_failure: str | None = None
    calls: list[tuple[Iteration.LLMCallRecorded, Call]] = field(default_factory=list)


def _visits(events: Sequence[Iteration.Event], calls: Sequence[Call]) -> tuple[list[_Visit], Iteration.PhaseChanged]:
    """The phase visits with their calls, and the terminal event."""
    visits: list[_Visit] = []
    by_call = iter(calls)
    terminal: Iteration.PhaseChanged | None = None
    for e in events:
        if isinstance(e, Iteration.Started):
            visits.append(_Visit(Phase.INITIALIZING.value, e))
        elif isinstance(e, Iteration.PhaseChanged):
            if visits:
                visits[-1].ended_at = e.timestamp
                if e.phase == Phase.FAILED:
                    visits[-1].ended_by_failure = e.error or ""
            if e.phase in TERMINAL_PHASES:
                terminal = e
                break
            visits.append(_Visit(e.phase, e))
        elif isinstance(e, Iteration.LLMCallRecorded):
            call = next(by_call)
            home = next((v for v in reversed(visits) if v.phase == e.phase), visits[-1] if visits else None)
            if home is not None:
                home.calls.append((e, call))
    if terminal is None:
        last = events[-1] if events else None
        raise IterationNotFinishedError(
            None if last is None else last.originator_id, visits[-1].phase if visits else None
        )
    return visits, terminal


def _cost_attributes(line: CostLine | None) -> dict[str, AttributeValue]:
    if line is None or line.calls == 0:
        return {}
    attributes: dict[str, AttributeValue] = {genai.COST_COMPLETE: line.complete}
    if line.usd is not None:
        attributes[genai.COST_USD] = float(line.usd)
    return attributes


@dataclass(frozen=True)
class _CallCost:
    """One call's price: `usd` (None: not priced), `complete` (priced, usage known)."""

    usd: Decimal | None

    @property
    def complete(self) -> bool:
        return self.usd is not None


def _call_cost(call: Call, table: PriceTable) -> _CallCost:
    """The call priced alone, as `cost_report` prices it (no usage or no model: not priced)."""
    if call.tokens is None or call.model is None:
        return _CallCost(None)
    cost = price_call(
        table,
        provider=call.provider,
        model=call.model,
        at=call.at,
        tokens=call.tokens,
        batch=call.batch,
        inference_geo=call.inference_geo,
    )
    return _CallCost(cost.usd if isinstance(cost, Priced) else None)


def _usage_attributes(e: Iteration.LLMCallRecorded, line: _CallCost | None) -> dict[str, AttributeValue]:
    """The usage of one call: the conventions' counts (input includes the cache) and Langfuse's usage details
    (input without the cache, as its Claude prices expect), which Langfuse reads instead of the former."""
    u = e.usage
    if u is None:
        return {genai.USAGE_UNKNOWN: True}
    attributes: dict[str, AttributeValue] = {
        genai.GEN_AI_USAGE_INPUT_TOKENS: u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens,
        genai.GEN_AI_USAGE_OUTPUT_TOKENS: u.output_tokens,
        genai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: u.cache_read_input_tokens,
        genai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: u.cache_creation_input_tokens,
        genai.CACHE_WRITE_5M_TOKENS: u.cache_write_5m_tokens,
        genai.CACHE_WRITE_1H_TOKENS: u.cache_write_1h_tokens,
    }
    details = {
        genai.LANGFUSE_INPUT: u.input_tokens,
        genai.LANGFUSE_OUTPUT: u.output_tokens,
        genai.LANGFUSE_CACHE_READ: u.cache_read_input_tokens,
        genai.LANGFUSE_CACHE_WRITE_5M: u.cache_write_5m_tokens,
        genai.LANGFUSE_CACHE_WRITE_1H: u.cache_write_1h_tokens,
        genai.LANGFUSE_TOTAL: u.total,
    }
    attributes[genai.LANGFUSE_USAGE_DETAILS] = json.dumps(details, separators=(",", ":"))
    if line is not None and line.usd is not None:
        attributes[genai.LANGFUSE_COST_DETAILS] = json.dumps({"total": float(line.usd)}, separators=(",", ":"))
    return attributes


def _chat_span(
    trace_parent: int, e: Iteration.LLMCallRecorded, line: _CallCost | None, table: PriceTable | None
) -> SpanModel:
    end = ns_of(e.timestamp)
    start = end if e.duration_ms is None else end - round(e.duration_ms * 1_000_000)
    attributes: dict[str, AttributeValue] = {
        genai.GEN_AI_OPERATION_NAME: genai.OPERATION_CHAT,
        genai.GEN_AI_PROVIDER_NAME: e.provider,
        genai.PHASE: e.phase,
        genai.EVENT_VERSION: e.originator_version,
        genai.DURATION_KNOWN: e.duration_ms is not None,
        genai.BATCH: e.batch,
        genai.LANGFUSE_OBSERVATION_TYPE: "generation",
    }
    if e.model is not None:
        attributes[genai.GEN_AI_REQUEST_MODEL] = e.model
        attributes[genai.GEN_AI_RESPONSE_MODEL] = e.model
    if e.request_id is not None:
        attributes[genai.GEN_AI_RESPONSE_ID] = e.request_id
    if e.inference_geo is not None:
        attributes[genai.INFERENCE_GEO] = e.inference_geo
    attributes.update(_usage_attributes(e, line))
    if table is not None and line is not None:
        attributes[genai.COST_COMPLETE] = line.complete
        if line.usd is not None:
            attributes[genai.COST_USD] = float(line.usd)
        attributes[genai.PRICE_TABLE_VERSION] = table.version
    name = genai.OPERATION_CHAT if e.model is None else f"{genai.OPERATION_CHAT} {e.model}"
    return SpanModel(name, span_id_of("chat", e.event_id), trace_parent, start, end, SpanKind.CLIENT, attributes)


def _root_attributes(
    events: Sequence[Iteration.Event], calls: Sequence[Call], terminal: Iteration.PhaseChanged
) -> dict[str, AttributeValue]:
    started = events[0]
    assert isinstance(started, Iteration.Started)
    attributes: dict[str, AttributeValue] = {
        genai.GEN_AI_OPERATION_NAME: genai.OPERATION_INVOKE_AGENT,
        genai.GEN_AI_AGENT_ID: started.agent_id,
        genai.GEN_AI_AGENT_NAME: started.agent_id,
        genai.ITERATION_ID: str(started.originator_id),
        genai.ITERATION_NUMBER: started.iteration_number,
        genai.ITERATION_STATUS: terminal.phase,
        genai.LANGFUSE_OBSERVATION_TYPE: "agent",
    }
    providers = {c.provider for c in calls}
    if len(providers) == 1:
        attributes[genai.GEN_AI_PROVIDER_NAME] = next(iter(providers))
    saved = next((e for e in events if isinstance(e, Iteration.RecordSaved)), None)
    if saved is not None:
        attributes[genai.RECORD_STATUS] = saved.status
    if terminal.phase == Phase.FAILED:
        attributes[genai.ERROR_TYPE] = error_type_of(terminal.error or "")
        attributes[genai.ERROR_MESSAGE] = terminal.error or ""
    return attributes


def iteration_trace(events: Sequence[Iteration.Event], table: PriceTable | None = None) -> TraceModel:
    """The trace of one finished iteration from its events (oldest first, `Started` first), priced with `table`
    (None: no cost attributes). A call is placed under the latest visit of its own phase (else the current one).

    Raises `IterationNotFinishedError` when the events reach no terminal phase, `ValueError` when they do not
    start with `Started`. Events after the terminal one (there are none in a valid history) are ignored.
    """
    if not events or not isinstance(events[0], Iteration.Started):
        raise ValueError("an iteration's events start with Started")
    started = events[0]
    calls = calls_of_events(started.agent_id, events)
    visits, terminal = _visits(events, calls)
    priced = table

    root_id = span_id_of(genai.OPERATION_INVOKE_AGENT, started.event_id)
    root_attributes = _root_attributes(events, calls, terminal)
    if table is not None:
        root_attributes[genai.PRICE_TABLE_VERSION] = table.version
        root_attributes.update(_cost_attributes(cost_report(calls, priced or table, by=()).total))
    start = ns_of(started.timestamp)
    failed = terminal.phase == Phase.FAILED
    spans = [
        SpanModel(
            f"{genai.OPERATION_INVOKE_AGENT} {started.agent_id}",
            root_id,
            None,
            start,
            max(start, ns_of(terminal.timestamp)),
            SpanKind.INTERNAL,
            root_attributes,
            (terminal.error or "") if failed else None,
        )
    ]
    for visit in visits:
        visit_id = span_id_of("phase", visit.opened_by.event_id)
        start = ns_of(visit.opened_by.timestamp)
        end = max(start, ns_of(visit.ended_at or terminal.timestamp))
        attributes: dict[str, AttributeValue] = {
            genai.PHASE: visit.phase,
            genai.PHASE_VERSION: visit.opened_by.originator_version,
            genai.LANGFUSE_OBSERVATION_TYPE: "span",
        }
        costs = [] if priced is None else [_call_cost(c, priced) for _, c in visit.calls]
        if costs:  # the visit's calls' own prices added up (what cost_report gives, without pricing them again)
            attributes[genai.COST_COMPLETE] = all(c.complete for c in costs)
            if any(c.usd is not None for c in costs):
                attributes[genai.COST_USD] = float(sum(c.usd for c in costs if c.usd is not None))
        error = visit.ended_by_failure
        if error is not None:
            attributes[genai.ERROR_TYPE] = error_type_of(error)
            attributes[genai.ERROR_MESSAGE] = error
        spans.append(SpanModel(visit.phase, visit_id, root_id, start, end, SpanKind.INTERNAL, attributes, error))
        for i, (e, _) in enumerate(visit.calls):
            spans.append(_chat_span(visit_id, e, costs[i] if costs else None, table))
    return TraceModel(trace_id_of(started.originator_id), tuple(spans))
