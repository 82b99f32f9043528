"""The read-model fold against hand-computed rows: phases entered twice, failures, additive tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast
from uuid import UUID

from itertrack.domain import Iteration, Status
from itertrack.projections.fold import LoadedState, fold

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
A = UUID("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa")
B = UUID("bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb")


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def scripted() -> list[Iteration.Event]:
    """Two iterations of one agent: A re-enters scan_generation and completes; B fails in backtests."""
    a = Iteration.start(A, "agent-1", 1, at(0))
    a.change_phase("scan_generation", None, at(100))
    a.record_metrics({"scan_generation_tokens": 1000}, at(300))
    a.change_phase("execution_generation", None, at(400))
    a.record_metrics({"execution_generation_tokens": 700}, at(450))
    a.record_metrics({"execution_generation_tokens": 300}, at(500))
    a.change_phase("scan_generation", None, at(600))
    a.change_phase("completed", None, at(1000))
    b = Iteration.start(B, "agent-1", 2, at(50))
    b.change_phase("backtest_execution", None, at(250))
    b.record_metrics({"backtest_execution_time_ms": 1.5}, at(260))
    b.change_phase("failed", "timeout", at(2250))
    events = cast(list[Iteration.Event], [*a.collect_events(), *b.collect_events()])
    return sorted(events, key=lambda e: e.timestamp)


def test_current_phase_rows() -> None:
    """Each iteration's row holds its last phase, status, error, entry time and last version."""
    changes = fold(scripted(), LoadedState())
    a, b = changes.current[A], changes.current[B]
    assert (a.phase, a.status, a.error, a.last_version, a.finished_at) == (
        "completed",
        Status.COMPLETED,
        None,
        8,
        at(1000),
    )
    assert (b.phase, b.status, b.error, b.last_version, b.finished_at) == (
        "failed",
        Status.FAILED,
        "timeout",
        4,
        at(2250),
    )
    assert (a.started_at, a.phase_entered_at, a.updated_at) == (at(0), at(1000), at(1000))


def test_metric_totals_and_agent_counts() -> None:
    """Regenerated tokens add up per iteration; the agent counts each reporting iteration once."""
    changes = fold(scripted(), LoadedState())
    assert changes.metrics == {
        (A, "scan_generation_tokens"): 1000,
        (A, "execution_generation_tokens"): 1000,
        (B, "backtest_execution_time_ms"): 1.5,
    }
    assert changes.agent_deltas == {
        ("agent-1", "scan_generation_tokens"): (1000, 1),
        ("agent-1", "execution_generation_tokens"): (1000, 1),
        ("agent-1", "backtest_execution_time_ms"): (1.5, 1),
    }


def test_phase_durations_count_every_stay_and_end_at_the_terminal_event() -> None:
    """scan_generation: 100->400 plus 600->1000 = 700 ms over 2 visits; the failed backtest ran 250->2250."""
    changes = fold(scripted(), LoadedState())
    assert changes.durations == {
        (A, "initializing"): (100.0, 1),
        (A, "scan_generation"): (700.0, 2),
        (A, "execution_generation"): (200.0, 1),
        (B, "initializing"): (200.0, 1),
        (B, "backtest_execution"): (2000.0, 1),
    }


def test_folding_in_two_batches_equals_folding_in_one() -> None:
    """A batch boundary anywhere gives the same rows as one batch (the second batch starts from stored rows)."""
    events = scripted()
    whole = fold(events, LoadedState())
    for cut in range(1, len(events)):
        first = fold(events[:cut], LoadedState())
        loaded = LoadedState(current=dict(first.current), metrics=dict(first.metrics), durations=dict(first.durations))
        second = fold(events[cut:], loaded)
        current = {**first.current, **second.current}
        metrics = {**first.metrics, **second.metrics}
        durations = {**first.durations, **second.durations}
        assert (current, metrics, durations) == (whole.current, whole.metrics, whole.durations), cut
        agents: dict[tuple[str, str], tuple[float, int]] = {}
        for part in (first.agent_deltas, second.agent_deltas):
            for key, (total, count) in part.items():
                before = agents.get(key, (0, 0))
                agents[key] = (before[0] + total, before[1] + count)
        assert agents == whole.agent_deltas, cut


def test_events_already_applied_are_skipped() -> None:
    """Re-folding events at or below a row's last version changes nothing (a replayed batch is harmless)."""
    events = scripted()
    whole = fold(events, LoadedState())
    loaded = LoadedState(current=dict(whole.current), metrics=dict(whole.metrics), durations=dict(whole.durations))
    again = fold(events, loaded)
    assert again.is_empty
    assert again.applied_events == 0
