"""The `llm_calls` view on SQLite and PostgreSQL: one row per call, sums per phase and model and per agent and
model, equal to a fold of the events and to a rebuild, and checked by `verify`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from uuid import UUID

import pytest
from fake_clock import START, FakeClock
from support import assert_same_models, fold_models, raw_sql, view_models

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import ReadModels, view_for
from itertrack.adapters.views.verify import verify_store
from itertrack.domain import PerformanceTracker, StoreNotMigratedError
from itertrack.projections.rows import LLMUsageTotal

Open = Callable[..., PerformanceTracker]

SPLIT = {
    "input_tokens": 100,
    "output_tokens": 40,
    "cache_read_input_tokens": 1000,
    "cache_creation_input_tokens": 300,
    "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
    "server_tool_use": {"web_search_requests": 2},
    "service_tier": "standard",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(step_ms=0)


@pytest.fixture
def tracked(
    durable_store: str, open_tracker: Open, clock: FakeClock
) -> Iterator[tuple[PerformanceTracker, ReadModels]]:
    tracker = open_tracker(durable_store, clock=clock)
    with ReadModels(tracker) as views:
        yield tracker, views


def calls(tracker: PerformanceTracker, clock: FakeClock) -> tuple[UUID, UUID]:
    """Two agents; calls to two models in two phases, one without usage, one batch in the US, plain tokens too."""
    clock.at(0)
    a = tracker.start_iteration("agent-1", 1)
    clock.at(10)
    tracker.record_llm_call(
        a, "scan_generation", model="claude-sonnet-4-5", usage=SPLIT, duration_ms=812.5, request_id="msg_1"
    )
    clock.at(20)
    tracker.record_usage(a, "analysis", {"input_tokens": 7, "output_tokens": 3}, model="claude-sonnet-4-5")
    clock.at(30)
    tracker.record_usage(
        a, "analysis", {"input_tokens": 5, "cache_creation_input_tokens": 50}, model="claude-haiku-4-5"
    )
    clock.at(40)
    tracker.record_usage(a, "analysis", None, model="claude-haiku-4-5")
    clock.at(50)
    tracker.update_metrics(a, {"analysis_tokens": 1000})  # a host's own tokens, beside the calls
    clock.at(24 * 3600 * 1000)  # the next day
    b = tracker.start_iteration("agent-2", 1)
    tracker.record_llm_call(b, "analysis", model=None, usage={"output_tokens": 9}, batch=True, inference_geo="us")
    return a, b


def usage_row(**fields: object) -> LLMUsageTotal:
    zero = dict.fromkeys(
        (
            "unknown_usage_calls",
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "cache_creation_5m_input_tokens",
            "cache_creation_1h_input_tokens",
        ),
        0,
    )
    return LLMUsageTotal.model_validate({"provider": "anthropic", **zero, **fields})


def test_each_call_is_one_row_with_its_tokens_model_and_date(
    tracked: tuple[PerformanceTracker, ReadModels], clock: FakeClock
) -> None:
    """llm_calls keeps every call with the 5m/1h split (all 5m without one), flags and its recorded time."""
    tracker, views = tracked
    a, b = calls(tracker, clock)
    rows = views.llm_calls(a)
    assert [(r.version, r.phase, r.model, r.usage_known) for r in rows] == [
        (2, "scan_generation", "claude-sonnet-4-5", True),
        (3, "analysis", "claude-sonnet-4-5", True),
        (4, "analysis", "claude-haiku-4-5", True),
        (5, "analysis", "claude-haiku-4-5", False),
    ]
    first = rows[0]
    assert (first.agent_id, first.provider, first.recorded_at) == (
        "agent-1",
        "anthropic",
        START + timedelta(milliseconds=10),
    )
    assert (first.input_tokens, first.output_tokens, first.cache_read_input_tokens) == (100, 40, 1000)
    assert (first.cache_creation_input_tokens, first.cache_creation_5m_input_tokens) == (300, 100)
    assert first.cache_creation_1h_input_tokens == 200
    assert (first.server_tool_use, first.service_tier) == ({"web_search_requests": 2}, "standard")
    assert (first.duration_ms, first.request_id, first.batch, first.inference_geo) == (812.5, "msg_1", False, None)
    assert (rows[2].cache_creation_5m_input_tokens, rows[2].cache_creation_1h_input_tokens) == (50, 0)
    assert rows[3].total_tokens == 0
    (other,) = views.llm_calls(agent="agent-2")
    assert (other.iteration_id, other.model, other.batch, other.inference_geo) == (b, None, True, "us")
    next_day = START + timedelta(days=1)
    assert [r.iteration_id for r in views.llm_calls(since=next_day)] == [b]
    assert len(views.llm_calls(until=next_day)) == 4
    assert len(views.llm_calls()) == 5


def test_usage_sums_per_phase_and_model_and_per_agent_and_model(
    tracked: tuple[PerformanceTracker, ReadModels], clock: FakeClock
) -> None:
    """Calls, calls without usage and each token kind, summed per (phase, model) and per (agent, model)."""
    tracker, views = tracked
    a, _ = calls(tracker, clock)
    assert views.llm_usage(a) == [
        usage_row(
            iteration_id=a, phase="analysis", model="claude-haiku-4-5", calls=2, unknown_usage_calls=1,
            input_tokens=5, cache_creation_input_tokens=50, cache_creation_5m_input_tokens=50,
        ),
        usage_row(
            iteration_id=a, phase="analysis", model="claude-sonnet-4-5", calls=1, input_tokens=7, output_tokens=3
        ),
        usage_row(
            iteration_id=a, phase="scan_generation", model="claude-sonnet-4-5", calls=1, input_tokens=100,
            output_tokens=40, cache_read_input_tokens=1000, cache_creation_input_tokens=300,
            cache_creation_5m_input_tokens=100, cache_creation_1h_input_tokens=200,
        ),
    ]  # fmt: skip
    assert views.agent_llm_usage() == [
        usage_row(
            agent_id="agent-1", model="claude-haiku-4-5", calls=2, unknown_usage_calls=1, input_tokens=5,
            cache_creation_input_tokens=50, cache_creation_5m_input_tokens=50,
        ),
        usage_row(
            agent_id="agent-1", model="claude-sonnet-4-5", calls=2, input_tokens=107, output_tokens=43,
            cache_read_input_tokens=1000, cache_creation_input_tokens=300, cache_creation_5m_input_tokens=100,
            cache_creation_1h_input_tokens=200,
        ),
        usage_row(agent_id="agent-2", model=None, calls=1, output_tokens=9),
    ]  # fmt: skip
    assert views.agent_llm_usage("agent-2") == views.agent_llm_usage()[2:]
    # The token metrics are unchanged by calls being events: the calls' sums plus the host's own 1000.
    metrics = {m.metric: m.total for m in views.metrics(a)}
    assert metrics["analysis_tokens"] == 10 + 55 + 1000
    assert metrics["scan_generation_tokens"] == 1440
    assert {(m.metric, m.total, m.iterations) for m in views.agent_metrics("agent-2")} == {
        ("analysis_tokens", 9, 1),
        ("analysis_input_tokens", 0, 1),
        ("analysis_output_tokens", 9, 1),
        ("analysis_cache_read_input_tokens", 0, 1),
        ("analysis_cache_creation_input_tokens", 0, 1),
    }


def test_the_view_equals_a_fold_and_a_rebuild_and_verifies(
    tracked: tuple[PerformanceTracker, ReadModels], clock: FakeClock
) -> None:
    """Incremental, folded and rebuilt (in batches of one) views agree; verify finds nothing wrong."""
    tracker, views = tracked
    for n in range(5):
        calls(tracker, clock)
        clock.at(10**9 + n)
    views.sync()
    expected = fold_models(tracker)
    assert len(expected["llm_calls"]) == 25
    assert_same_models(view_models(views.view), expected)
    views.view.reset()
    views.batch_size = 1
    views.sync()
    assert_same_models(view_models(views.view), expected)
    report = verify_store(tracker)
    assert report.ok, report.problems


def test_views_without_the_llm_calls_table_are_rebuilt_by_migrate(
    durable_store: str, open_tracker: Open, clock: FakeClock
) -> None:
    """Views kept past call events without an llm_calls table (an older version applied them) get the table
    from the migrate step and are rebuilt from the events, calls included."""
    tracker = open_tracker(durable_store, clock=clock)
    calls(tracker, clock)
    with ReadModels(tracker, background=False) as views:
        views.sync()
        expected = view_models(views.view)
    with raw_sql(durable_store) as run:
        run("DROP TABLE llm_calls", ())
    if durable_store.startswith("postgresql"):
        # PostgreSQL migrates in a step of its own: until then the views say so (SQLite migrates them at open).
        with pytest.raises(StoreNotMigratedError, match="itertrack migrate"):
            view_for(store_of(tracker).factory)
    tracker.migrate()
    with ReadModels(open_tracker(durable_store, clock=clock), background=False) as views:
        assert views.view.position() == 0  # emptied for the rebuild
        views.sync()
        assert len(views.llm_calls()) == 5
        assert_same_models(view_models(views.view), expected)
