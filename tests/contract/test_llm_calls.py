"""One event per LLM call, on every store: what it keeps, the token metrics it folds, unknown usage, retries."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from fake_clock import FakeClock

from itertrack.domain import (
    ChangeIdReusedError,
    InvalidInputError,
    InvalidMetricError,
    Iteration,
    IterationFinishedError,
    LLMUsage,
    PerformanceTracker,
    Status,
)

Open = Callable[..., PerformanceTracker]

USAGE = {
    "input_tokens": 100,
    "output_tokens": 40,
    "cache_read_input_tokens": 60,
    "cache_creation_input_tokens": 30,
    "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20},
    "server_tool_use": {"web_search_requests": 3},
    "service_tier": "priority",
}


def test_an_llm_call_is_one_event_with_its_model_usage_and_details(any_store: str, open_tracker: Open) -> None:
    """record_llm_call stores phase, provider, model, the raw usage, duration, request id, batch and geo."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    read = tracker.record_llm_call(
        iid,
        "analysis",
        model="claude-sonnet-4-5-20250929",
        usage=USAGE,
        duration_ms=1234.5,
        request_id="msg_01ABC",
        batch=True,
        inference_geo="us",
    )
    event = tracker.history(iid)[-1]
    assert isinstance(event, Iteration.LLMCallRecorded)
    assert event.usage == read == LLMUsage.of(USAGE)
    assert (event.phase, event.provider, event.model) == ("analysis", "anthropic", "claude-sonnet-4-5-20250929")
    assert (event.duration_ms, event.request_id, event.batch, event.inference_geo) == (1234.5, "msg_01ABC", True, "us")
    assert event.usage is not None
    assert (event.usage.cache_creation_5m_input_tokens, event.usage.cache_creation_1h_input_tokens) == (10, 20)
    assert (event.usage.server_tool_use, event.usage.service_tier) == ({"web_search_requests": 3}, "priority")
    assert not event.usage_unknown


def test_record_usage_writes_the_call_event_and_the_same_token_metrics_as_before(
    any_store: str, open_tracker: Open
) -> None:
    """The per-phase token metrics are exactly what record_usage added before calls were events."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    tracker.record_usage(iid, "analysis", {"input_tokens": 100, "output_tokens": 40, "cache_read_input_tokens": 60})
    tracker.record_usage(iid, "analysis", USAGE, model="claude-haiku-4-5")
    tracker.record_usage(iid, "scan_generation", LLMUsage())  # a call that used no tokens still adds its zeros
    events = tracker.history(iid)[1:]
    assert [type(e).__name__ for e in events] == ["LLMCallRecorded"] * 3
    assert [e.model for e in events if isinstance(e, Iteration.LLMCallRecorded)] == [None, "claude-haiku-4-5", None]
    assert tracker.get_iteration(iid).metrics == {
        "analysis_tokens": 200 + 230,
        "analysis_input_tokens": 200,
        "analysis_output_tokens": 80,
        "analysis_cache_read_input_tokens": 120,
        "analysis_cache_creation_input_tokens": 30,
        "scan_generation_tokens": 0,
        "scan_generation_input_tokens": 0,
        "scan_generation_output_tokens": 0,
        "scan_generation_cache_read_input_tokens": 0,
        "scan_generation_cache_creation_input_tokens": 0,
    }


def test_a_call_without_usage_is_recorded_as_unknown_with_a_warning(
    any_store: str, open_tracker: Open, caplog: pytest.LogCaptureFixture
) -> None:
    """usage=None (or no token count at all) records the call, adds no tokens, warns, and raises nothing."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    with caplog.at_level(logging.WARNING, logger="itertrack"):
        assert tracker.record_usage(iid, "analysis", None, model="claude-opus-4-1") is None
        assert tracker.record_llm_call(iid, "analysis", model=None, usage=object()) is None
    assert sum("carried no usage" in r.getMessage() for r in caplog.records) == 2
    calls = [e for e in tracker.history(iid) if isinstance(e, Iteration.LLMCallRecorded)]
    assert [(c.model, c.usage, c.usage_unknown) for c in calls] == [("claude-opus-4-1", None, True), (None, None, True)]
    state = tracker.get_iteration(iid)
    assert (state.metrics, state.status) == ({}, Status.RUNNING)


def test_missing_usage_inside_track_phase_does_not_fail_the_iteration(any_store: str, open_tracker: Open) -> None:
    """A response with usage=None inside a timed phase: the phase ends normally (it used to fail the iteration)."""
    tracker = open_tracker(any_store, clock=FakeClock())
    iid = tracker.start_iteration("agent-1", 1)
    with tracker.track_phase(iid, "analysis"):
        tracker.record_usage(iid, "analysis", None)
    state = tracker.get_iteration(iid)
    assert (state.phase, state.status, state.error) == ("analysis", Status.RUNNING, None)
    assert set(state.metrics) == {"analysis_time_ms"}


def test_a_keyed_call_retried_is_recorded_once_and_a_different_one_under_its_key_is_refused(
    any_store: str, open_tracker: Open
) -> None:
    """The same call with the same change_id is a no-op; other usage or another model under the key is refused."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    for _ in range(2):
        tracker.record_llm_call(iid, "analysis", model="m-1", usage=USAGE, duration_ms=5, change_id="call-1")
    assert tracker.get_iteration(iid).metrics["analysis_tokens"] == 230
    assert len(tracker.history(iid)) == 2
    for other in ({"model": "m-2", "usage": USAGE}, {"model": "m-1", "usage": {"input_tokens": 1}}):
        with pytest.raises(ChangeIdReusedError):
            tracker.record_llm_call(iid, "analysis", change_id="call-1", duration_ms=5, **other)  # type: ignore[arg-type]
    assert len(tracker.history(iid)) == 2


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"model": ""}, "model"),
        ({"model": "x" * 201}, "model"),
        ({"model": 5}, "model"),
        ({"request_id": "a\x00b"}, "request_id"),
        ({"provider": "Anthropic"}, "provider"),
        ({"duration_ms": -1}, "duration_ms"),
        ({"duration_ms": float("nan")}, "duration_ms"),
        ({"duration_ms": True}, "duration_ms"),
        ({"batch": "yes"}, "batch"),
        ({"inference_geo": ""}, "inference_geo"),
        ({"usage": {"input_tokens": -1}}, "usage.input_tokens"),
        ({"usage": "lots"}, "usage"),
    ],
)
def test_bad_call_details_are_refused_naming_the_field_and_nothing_is_written(
    any_store: str, open_tracker: Open, options: dict[str, object], field: str
) -> None:
    """Each bad argument raises InvalidInputError naming it; the iteration is unchanged."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    call: dict[str, object] = {"model": "m", "usage": {"input_tokens": 1}, **options}
    with pytest.raises(InvalidInputError) as raised:
        tracker.record_llm_call(iid, "analysis", **call)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert tracker.get_iteration(iid).version == 1


def test_calls_of_a_finished_iteration_are_refused_and_totals_stay_bounded(any_store: str, open_tracker: Open) -> None:
    """A finished iteration takes no more calls; a call that would take a total past 2**63-1 is refused."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    tracker.record_usage(iid, "analysis", {"input_tokens": 2**63 - 2})
    with pytest.raises(InvalidMetricError, match="analysis_tokens"):
        tracker.record_usage(iid, "analysis", {"input_tokens": 2})
    tracker.update_phase(iid, "completed")
    with pytest.raises(IterationFinishedError):
        tracker.record_usage(iid, "analysis", {"input_tokens": 1})
    assert len(tracker.history(iid)) == 3


def test_a_batch_tier_marks_the_call_batch(any_store: str, open_tracker: Open) -> None:
    """A usage whose service_tier is `batch` (a Message Batches result) records the call as batch."""
    tracker = open_tracker(any_store)
    iid = tracker.start_iteration("agent-1", 1)
    tracker.record_usage(iid, "analysis", {"input_tokens": 1, "service_tier": "batch"})
    event = tracker.history(iid)[-1]
    assert isinstance(event, Iteration.LLMCallRecorded)
    assert event.batch
