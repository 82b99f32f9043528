"""Read-model totals are exact at any size the events allow, on both stores (issue 12, item 1).

The issue's case: a host reports `time.time_ns()` as `*_time_ms` in six iterations of one agent. Each
iteration's total fits (the tracker caps them at 2**63-1), but the agent's does not fit SQLite's 64-bit
integers: every catch-up batch failed and the views stopped for every agent.
"""

from __future__ import annotations

from collections.abc import Callable

from itertrack.adapters.views.keeper import ReadModels
from itertrack.adapters.views.verify import verify_store
from itertrack.domain import PerformanceTracker

NS_AS_MS = 1_800_000_000_000_000_000  # time.time_ns() in 2027, reported as milliseconds


def test_agent_and_overall_totals_past_64_bits_are_exact_and_the_views_go_on(
    durable_store: str, open_tracker: Callable[..., PerformanceTracker]
) -> None:
    tracker = open_tracker(durable_store)
    for agent in ("agent-ns", "agent-ns-too"):
        for n in range(6):
            iid = tracker.start_iteration(agent, n)
            tracker.update_metrics(iid, {"analysis_time_ms": NS_AS_MS})
    normal = tracker.start_iteration("agent-1", 1)  # another agent's iteration, after the huge ones
    tracker.update_metrics(normal, {"analysis_time_ms": 7})
    with ReadModels(tracker, background=False) as views:
        by_agent = {m.agent_id: m.total for m in views.agent_metrics() if m.metric == "analysis_time_ms"}
        assert by_agent == {"agent-ns": 6 * NS_AS_MS, "agent-ns-too": 6 * NS_AS_MS, "agent-1": 7}
        (overall,) = [m for m in views.overall_metrics() if m.metric == "analysis_time_ms"]
        assert overall.total == 12 * NS_AS_MS + 7  # 21,600,000,000,000,000,007: exact, not a float
        assert {m.metric: m.total for m in views.metrics(normal)} == {"analysis_time_ms": 7}
    report = verify_store(tracker)
    assert report.ok, report.problems
    assert report.read_models_behind == 0
