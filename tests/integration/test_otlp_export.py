"""The OTLP exporter against a real OTLP/HTTP receiver (protobuf decoded with opentelemetry-proto) on loopback:
iterations of a real SQLite store written with a fake clock arrive as traces whose ids, tree, times, GenAI
attributes and token counts are those of the events; refusals are retried until accepted; re-exports keep ids."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from fake_clock import START, FakeClock

from itertrack.adapters.export import otlp_consumer
from itertrack.adapters.export.otlp import OtlpExporter, OtlpExportError, TraceSender
from itertrack.adapters.export.trace_model import span_id_of
from itertrack.adapters.feed.consumer import Delivery
from itertrack.adapters.prices import load_price_table
from itertrack.domain import PerformanceTracker
from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.iteration import Iteration
from itertrack.projections.costing import calls_of_events, cost_report
from scripts.otlp_receiver import OtlpReceiver, ReceivedSpan, running_receiver

SONNET = "claude-sonnet-4-5"
HAIKU = "claude-haiku-4-5"
UNSET, ERROR = 0, 2
INTERNAL, CLIENT = 1, 3  # the protobuf's SpanKind values


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with running_receiver() as r:
        yield r


@pytest.fixture
def tracker(sqlite_store: str, open_tracker: Callable[..., PerformanceTracker]) -> PerformanceTracker:
    # step 1 ms: every reading of the clock is 1 ms after the last, so each event's instant is known.
    return open_tracker(sqlite_store, clock=FakeClock(step_ms=1))


def exporter(tracker: PerformanceTracker, receiver: OtlpReceiver, **sender: Any) -> OtlpExporter:
    sender.setdefault("base_delay", 0.001)
    return OtlpExporter(tracker, sender=TraceSender(endpoint=receiver.endpoint, **sender))


def completed_iteration(t: PerformanceTracker) -> UUID:
    """initializing -> scan_generation (2 calls) -> scan_execution -> analysis (1 call, no usage) -> completed."""
    iid = t.start_iteration("scanner", 7)  # START + 1 ms
    t.update_phase(iid, "scan_generation")  # + 2 ms
    t.record_llm_call(  # + 3 ms
        iid,
        "scan_generation",
        model=SONNET,
        usage={
            "input_tokens": 10,
            "output_tokens": 20,
            "cache_read_input_tokens": 300,
            "cache_creation_input_tokens": 40,
        },
        duration_ms=1.5,
        request_id="msg_1",
    )
    t.record_llm_call(  # + 4 ms
        iid,
        "scan_generation",
        model=HAIKU,
        usage={
            "input_tokens": 5,
            "output_tokens": 7,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
        },
    )
    t.update_phase(iid, "scan_execution")  # + 5 ms
    t.update_phase(iid, "analysis")  # + 6 ms
    t.record_llm_call(iid, "analysis", model=None, usage=None)  # + 7 ms
    t.save_iteration({"id": iid, "agent_id": "scanner", "iteration_number": 7})  # + 9 ms (its created_at: + 8)
    t.update_phase(iid, "completed")  # + 10 ms
    return iid


def failed_iteration(t: PerformanceTracker) -> UUID:
    iid = t.start_iteration("scanner", 8)
    t.update_phase(iid, "backtest_execution")
    t.record_llm_call(iid, "backtest_execution", model=SONNET, usage={"input_tokens": 1, "output_tokens": 1})
    t.update_phase(iid, "failed", error="backtester crashed: boom")
    return iid


def ns(ms_after_start: int) -> int:
    """Nanoseconds since the epoch of START + `ms` (hand-computed from the fake clock)."""
    return (
        int((START + timedelta(milliseconds=ms_after_start)).timestamp()) * 10**9
        + ((START.microsecond + ms_after_start * 1000) % 1_000_000) * 1000
    )


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans}


def hex_id(role: str, event: Iteration.Event) -> str:
    return f"{span_id_of(role, event.event_id):016x}"


def test_a_completed_iteration_arrives_as_one_trace_with_the_events_ids_tree_times_and_genai_usage(
    tracker: PerformanceTracker, receiver: OtlpReceiver
) -> None:
    iid = completed_iteration(tracker)
    history = tracker.history(iid)
    started, scan_gen, call1, call2, scan_exec, analysis, call3, _saved, _done = history

    exporter(tracker, receiver).export_iteration(iid)

    spans = receiver.snapshot()
    assert len(spans) == 1 + 4 + 3  # root, four phase visits, three calls
    assert {s.trace_id for s in spans} == {iid.hex}  # the iteration's UUID, 32 hex digits
    s = by_name(spans)
    root = s["invoke_agent scanner"]
    assert root.span_id == hex_id("invoke_agent", started)
    assert root.parent_span_id == ""
    assert (root.kind, root.start_ns, root.end_ns) == (INTERNAL, ns(1), ns(10))
    assert root.status_code == UNSET
    assert root.resource["service.name"] == "itertrack"
    assert root.scope == "itertrack"
    assert root.attributes == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.id": "scanner",
        "gen_ai.agent.name": "scanner",
        "gen_ai.provider.name": "anthropic",
        "itertrack.iteration.id": str(iid),
        "itertrack.iteration.number": 7,
        "itertrack.iteration.status": "completed",
        "itertrack.record.status": "completed",
        "itertrack.price_table.version": root.attributes["itertrack.price_table.version"],
        # the no-usage call is not priced: the total is of the two priced calls, marked incomplete
        "itertrack.cost.usd": pytest.approx(0.00057 + 0.000565),
        "itertrack.cost.complete": False,
        "langfuse.observation.type": "agent",
    }
    # one span per phase visit, each from its own event to the next phase change; terminal phases have none
    phases = {name: s[name] for name in ("initializing", "scan_generation", "scan_execution", "analysis")}
    assert {n: (p.start_ns, p.end_ns) for n, p in phases.items()} == {
        "initializing": (ns(1), ns(2)),
        "scan_generation": (ns(2), ns(5)),
        "scan_execution": (ns(5), ns(6)),
        "analysis": (ns(6), ns(10)),
    }
    assert {p.parent_span_id for p in phases.values()} == {root.span_id}
    assert phases["initializing"].span_id == hex_id("phase", started)  # not the root's: another role
    assert phases["scan_generation"].span_id == hex_id("phase", scan_gen)
    assert phases["scan_execution"].span_id == hex_id("phase", scan_exec)
    assert phases["analysis"].span_id == hex_id("phase", analysis)
    assert all(p.status_code == UNSET and p.kind == INTERNAL for p in phases.values())

    sonnet, haiku, unknown = s[f"chat {SONNET}"], s[f"chat {HAIKU}"], s["chat"]
    assert [c.span_id for c in (sonnet, haiku, unknown)] == [hex_id("chat", e) for e in (call1, call2, call3)]
    assert sonnet.parent_span_id == haiku.parent_span_id == phases["scan_generation"].span_id
    assert unknown.parent_span_id == phases["analysis"].span_id
    assert {c.kind for c in (sonnet, haiku, unknown)} == {CLIENT}
    # ends at the event; starts duration_ms before it when measured, else has no length
    assert (sonnet.start_ns, sonnet.end_ns) == (ns(3) - 1_500_000, ns(3))
    assert (haiku.start_ns, haiku.end_ns) == (ns(4), ns(4))

    # input_tokens includes the cache (10 + 300 + 40); Langfuse's details keep input without it, totals agree
    assert sonnet.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": SONNET,
        "gen_ai.response.model": SONNET,
        "gen_ai.response.id": "msg_1",
        "gen_ai.usage.input_tokens": 350,
        "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.cache_read.input_tokens": 300,
        "gen_ai.usage.cache_creation.input_tokens": 40,
        "itertrack.usage.cache_write_5m.input_tokens": 40,
        "itertrack.usage.cache_write_1h.input_tokens": 0,
        "itertrack.phase": "scan_generation",
        "itertrack.event.version": 3,
        "itertrack.call.duration_known": True,
        "itertrack.call.batch": False,
        "itertrack.price_table.version": root.attributes["itertrack.price_table.version"],
        # $3/M input, $15/M output, $0.30/M cache reads, $3.75/M 5-minute cache writes:
        # 10*3 + 20*15 + 300*0.3 + 40*3.75 = 570 micro-dollars
        "itertrack.cost.usd": pytest.approx(0.00057),
        "itertrack.cost.complete": True,
        "langfuse.observation.type": "generation",
        "langfuse.observation.usage_details": sonnet.attributes["langfuse.observation.usage_details"],
        "langfuse.observation.cost_details": sonnet.attributes["langfuse.observation.cost_details"],
    }
    assert json.loads(sonnet.attributes["langfuse.observation.usage_details"]) == {
        "input": 10,
        "output": 20,
        "input_cache_read": 300,
        "input_cache_creation": 40,
        "input_cache_creation_1h": 0,
        "total": 370,
    }
    assert json.loads(sonnet.attributes["langfuse.observation.cost_details"]) == {"total": pytest.approx(0.00057)}
    assert haiku.attributes["gen_ai.usage.input_tokens"] == 5 + 0 + 300
    assert haiku.attributes["gen_ai.usage.cache_creation.input_tokens"] == 300
    assert haiku.attributes["itertrack.usage.cache_write_1h.input_tokens"] == 200
    assert json.loads(haiku.attributes["langfuse.observation.usage_details"]) == {
        "input": 5,
        "output": 7,
        "input_cache_read": 0,
        "input_cache_creation": 100,
        "input_cache_creation_1h": 200,
        "total": 312,
    }
    # haiku 4.5: $1/M input, $5/M output, $1.25/M 5-minute and $2/M 1-hour cache writes: 5 + 35 + 125 + 400
    assert haiku.attributes["itertrack.cost.usd"] == pytest.approx(0.000565)
    assert phases["scan_generation"].attributes["itertrack.cost.usd"] == pytest.approx(0.00057 + 0.000565)
    # the response carried no usage and no model: counted, never priced, no token attributes
    assert unknown.attributes["itertrack.usage.unknown"] is True
    priced_names = ("gen_ai.usage.", "gen_ai.request.", "langfuse.observation.usage")
    assert not any(k.startswith(priced_names) for k in unknown.attributes)
    assert phases["analysis"].attributes["itertrack.cost.complete"] is False
    # usage only on chat spans: a tool summing every span of the trace counts each token once
    for span in (root, *phases.values()):
        assert not any(k.startswith("gen_ai.usage.") for k in span.attributes)


def test_a_failed_iteration_and_its_failed_phase_carry_error_status_and_type(
    tracker: PerformanceTracker, receiver: OtlpReceiver
) -> None:
    iid = failed_iteration(tracker)

    exporter(tracker, receiver).export_iteration(iid)

    s = by_name(receiver.snapshot())
    root, failed_phase, before = s["invoke_agent scanner"], s["backtest_execution"], s["initializing"]
    assert (root.status_code, root.status_message) == (ERROR, "backtester crashed: boom")
    assert root.attributes["itertrack.iteration.status"] == "failed"
    assert root.attributes["error.type"] == "_OTHER"
    assert root.attributes["error.message"] == "backtester crashed: boom"
    assert (failed_phase.status_code, failed_phase.status_message) == (ERROR, "backtester crashed: boom")
    assert failed_phase.attributes["error.type"] == "_OTHER"
    assert before.status_code == UNSET
    assert "error.type" not in before.attributes
    assert s[f"chat {SONNET}"].status_code == UNSET
    assert "failed" not in s  # the terminal phase ends the trace; it is no span of its own


def test_an_interrupted_phase_is_typed_interrupted(tracker: PerformanceTracker, receiver: OtlpReceiver) -> None:
    iid = tracker.start_iteration("scanner", 9)
    with pytest.raises(KeyboardInterrupt), tracker.track_phase(iid, "analysis"):
        raise KeyboardInterrupt

    exporter(tracker, receiver).export_iteration(iid)

    s = by_name(receiver.snapshot())
    assert s["analysis"].attributes["error.type"] == "interrupted"
    assert s["invoke_agent scanner"].status_message == "interrupted: KeyboardInterrupt"


def deliveries(tracker: PerformanceTracker, iid: UUID, start: int = 0) -> list[Delivery]:
    return [
        Delivery(event=e, position=start + i, key=f"{iid}:{e.originator_version}", agent_id="scanner")
        for i, e in enumerate(tracker.history(iid), 1)
    ]


def test_the_consumer_exports_an_iteration_once_on_its_terminal_phase_change(
    tracker: PerformanceTracker, receiver: OtlpReceiver
) -> None:
    iid = completed_iteration(tracker)
    consumer = exporter(tracker, receiver)
    assert consumer.name == "otlp"
    assert consumer.event_types == ("PhaseChanged",)

    *before, last = deliveries(tracker, iid)
    for d in before:
        consumer.handle(d)
    assert receiver.requests == 0  # nothing until the iteration finished
    consumer.handle(last)
    assert receiver.requests == 1
    assert len(receiver.distinct_span_ids()) == 8


def test_a_receiver_refusing_for_a_while_loses_nothing_handle_returns_once_accepted(
    tracker: PerformanceTracker, receiver: OtlpReceiver
) -> None:
    ids = [completed_iteration(tracker), failed_iteration(tracker)]
    consumer = exporter(tracker, receiver)
    # more refusals than the SDK's own retries (6 per export call): only our retries get it through
    receiver.refuse_next(15, status=503)

    for iid in ids:
        consumer.handle(deliveries(tracker, iid)[-1])

    assert receiver.refused == 15
    assert consumer.sender.failures >= 2
    assert consumer.exported == 2
    assert {s.trace_id for s in receiver.snapshot()} == {iid.hex for iid in ids}
    assert len(receiver.distinct_span_ids()) == 8 + 4  # every span of both, each once


def test_an_export_never_accepted_raises_after_its_attempts_and_counts_nothing(
    tracker: PerformanceTracker, receiver: OtlpReceiver
) -> None:
    iid = failed_iteration(tracker)
    consumer = exporter(tracker, receiver, max_attempts=2)
    receiver.refuse_next(10**6, status=400)  # not retryable for the SDK: one request per attempt

    with pytest.raises(OtlpExportError, match=f"trace {iid.hex} not accepted after 2 attempts"):
        consumer.handle(deliveries(tracker, iid)[-1])

    assert receiver.requests == 2
    assert consumer.exported == 0
    assert receiver.snapshot() == []


def test_exporting_the_same_iteration_again_sends_the_same_ids(
    tracker: PerformanceTracker, receiver: OtlpReceiver
) -> None:
    iid = completed_iteration(tracker)

    exporter(tracker, receiver).export_iteration(iid)
    first = [(s.trace_id, s.span_id, s.parent_span_id) for s in receiver.snapshot()]
    exporter(tracker, receiver).export_iteration(iid)  # a new exporter, as after a restart
    second = [(s.trace_id, s.span_id, s.parent_span_id) for s in receiver.snapshot()[len(first) :]]

    assert first == second
    assert len(receiver.distinct_span_ids()) == len(first) == 8  # the receiver dedupes by span id


def test_an_unfinished_iteration_is_not_exported(tracker: PerformanceTracker, receiver: OtlpReceiver) -> None:
    iid = tracker.start_iteration("scanner", 1)
    tracker.update_phase(iid, "analysis")
    consumer = exporter(tracker, receiver)
    for d in deliveries(tracker, iid):
        consumer.handle(d)
    assert receiver.requests == 0


def test_the_standard_otel_settings_name_the_endpoint_and_headers(
    tracker: PerformanceTracker, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-mlflow-experiment-id=123,authorization=Basic%20cGs6c2s=")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "research-agents")
    iid = failed_iteration(tracker)

    OtlpExporter(tracker, {}).export_iteration(iid)

    assert receiver.headers[-1]["x-mlflow-experiment-id"] == "123"
    assert receiver.headers[-1]["authorization"] == "Basic cGs6c2s="
    assert {s.resource["service.name"] for s in receiver.snapshot()} == {"research-agents"}


@pytest.mark.parametrize(
    ("options", "field"),
    [({"endpont": "http://x"}, "option"), ({"max_attempts": "0"}, "max_attempts"), ({"timeout": "-1"}, "timeout")],
)
def test_a_bad_option_is_refused_naming_it(tracker: PerformanceTracker, options: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        OtlpExporter(tracker, options)
    assert caught.value.field == field


def test_cost_attributes_equal_the_cost_report(tracker: PerformanceTracker, receiver: OtlpReceiver) -> None:
    iid = completed_iteration(tracker)
    exporter(tracker, receiver).export_iteration(iid)
    report = cost_report(calls_of_events("scanner", tracker.history(iid)), load_price_table(), by=("phase",))
    s = by_name(receiver.snapshot())

    assert report.total.usd is not None
    assert Decimal(str(s["invoke_agent scanner"].attributes["itertrack.cost.usd"])) == report.total.usd
    for line in report.lines:
        phase = s[str(line.group["phase"])]
        assert phase.attributes.get("itertrack.cost.usd") == (None if line.usd is None else float(line.usd))


def test_the_factory_builds_the_consumer(tracker: PerformanceTracker, receiver: OtlpReceiver) -> None:
    consumer = otlp_consumer(tracker, {"endpoint": receiver.endpoint, "max_attempts": "3", "timeout": "2.5"})
    assert isinstance(consumer, OtlpExporter)
    assert consumer.sender.max_attempts == 3
    consumer.export_iteration(failed_iteration(tracker))
    assert receiver.requests == 1


def test_without_the_otel_extra_the_factory_names_it(
    tracker: PerformanceTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "itertrack.adapters.export.otlp")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(InvalidInputError, match=r"pip install 'itertrack\[otel\]'") as caught:
        otlp_consumer(tracker, {})
    assert caught.value.field == "consumer"
