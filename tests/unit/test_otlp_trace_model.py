"""The pure mapping's ids, the attribute names against the OpenTelemetry semantic-conventions package, and the
mapping's refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from opentelemetry.semconv._incubating.attributes import error_attributes as otel_error
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as otel_genai

from itertrack.adapters.export import genai
from itertrack.adapters.export.trace_model import (
    IterationNotFinishedError,
    error_type_of,
    iteration_trace,
    ns_of,
    span_id_of,
    trace_id_of,
)
from itertrack.domain.model.iteration import Iteration

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
IID = UUID("0123456789abcdef0123456789abcdef")


def test_span_ids_are_deterministic_64_bit_nonzero_and_differ_by_role_and_event() -> None:
    a, b = UUID(int=1), UUID(int=2)
    ids = {span_id_of(role, e) for role in ("invoke_agent", "phase", "chat") for e in (a, b)}
    assert len(ids) == 6
    assert all(0 < i < 2**64 for i in ids)
    assert span_id_of("chat", a) == span_id_of("chat", UUID(int=1))


def test_the_trace_id_is_the_iterations_uuid() -> None:
    assert f"{trace_id_of(IID):032x}" == IID.hex == "0123456789abcdef0123456789abcdef"


def test_times_are_exact_integer_nanoseconds() -> None:
    assert ns_of(AT) == 1767323045_678901_000


def test_error_type_is_low_cardinality() -> None:
    assert error_type_of("interrupted: KeyboardInterrupt") == "interrupted"
    assert error_type_of("cancelled: CancelledError") == "cancelled"
    assert error_type_of("ValueError: bad input 42") == "_OTHER"


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (genai.GEN_AI_OPERATION_NAME, otel_genai.GEN_AI_OPERATION_NAME),
        (genai.GEN_AI_PROVIDER_NAME, otel_genai.GEN_AI_PROVIDER_NAME),
        (genai.GEN_AI_AGENT_ID, otel_genai.GEN_AI_AGENT_ID),
        (genai.GEN_AI_AGENT_NAME, otel_genai.GEN_AI_AGENT_NAME),
        (genai.GEN_AI_REQUEST_MODEL, otel_genai.GEN_AI_REQUEST_MODEL),
        (genai.GEN_AI_RESPONSE_MODEL, otel_genai.GEN_AI_RESPONSE_MODEL),
        (genai.GEN_AI_RESPONSE_ID, otel_genai.GEN_AI_RESPONSE_ID),
        (genai.GEN_AI_USAGE_INPUT_TOKENS, otel_genai.GEN_AI_USAGE_INPUT_TOKENS),
        (genai.GEN_AI_USAGE_OUTPUT_TOKENS, otel_genai.GEN_AI_USAGE_OUTPUT_TOKENS),
        (genai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, otel_genai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
        (genai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, otel_genai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS),
        (genai.OPERATION_INVOKE_AGENT, otel_genai.GenAiOperationNameValues.INVOKE_AGENT.value),
        (genai.OPERATION_CHAT, otel_genai.GenAiOperationNameValues.CHAT.value),
        (genai.ERROR_TYPE, otel_error.ERROR_TYPE),
        (genai.ERROR_MESSAGE, otel_error.ERROR_MESSAGE),
    ],
)
def test_attribute_names_are_the_conventions(ours: str, theirs: str) -> None:
    assert ours == theirs


def started() -> Iteration.Started:
    return Iteration.Started(
        originator_id=IID,
        originator_version=1,
        timestamp=AT,
        originator_topic="itertrack.domain.model.iteration:Iteration",
        agent_id="a",
        iteration_number=1,
    )


def test_an_unfinished_iteration_has_no_trace() -> None:
    with pytest.raises(IterationNotFinishedError, match="is not finished"):
        iteration_trace([started()])


def test_events_not_starting_with_started_are_refused() -> None:
    changed = Iteration.PhaseChanged(originator_id=IID, originator_version=2, timestamp=AT, phase="completed")
    with pytest.raises(ValueError, match="start with Started"):
        iteration_trace([changed])


def test_without_a_price_table_no_cost_is_claimed() -> None:
    done = Iteration.PhaseChanged(originator_id=IID, originator_version=2, timestamp=AT, phase="completed")
    trace = iteration_trace([started(), done])
    assert [s.name for s in trace.spans] == ["invoke_agent a", "initializing"]
    assert not any(k.startswith("itertrack.cost") for s in trace.spans for k in s.attributes)
