"""The digest of a finished iteration, as hand-written text: who, outcome, phases with durations, tokens, error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from itertrack.domain import InvalidInputError, Iteration, Status
from itertrack.domain.model.usage import LLMUsage
from itertrack.projections.digest import MAX_DIGEST_ERROR, iteration_digest

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ID = UUID("12345678-1234-4678-9234-567812345678")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_completed_iteration_digest() -> None:
    """A completed iteration: phases in order with their time (a phase entered twice summed, marked x2), the
    tokens of metrics and LLM calls per phase, no error line."""
    it = Iteration.start(ID, "momentum", 12, T0)
    it.change_phase("scan_generation", None, at(0.5))
    it.record_llm_call({"phase": "scan_generation", "usage": LLMUsage(input_tokens=4000, output_tokens=200)}, at(3))
    it.change_phase("scan_execution", None, at(8.5))
    it.change_phase("backtest_execution", None, at(10.0))
    it.record_metrics({"backtest_execution_tokens": 1000, "backtest_execution_time_ms": 5}, at(11))
    it.change_phase("analysis", None, at(30.0))
    it.change_phase("backtest_execution", None, at(32.0))
    it.change_phase("completed", None, at(40.3))
    digest = iteration_digest(it.take_events())
    assert digest.text == (
        "agent momentum iteration 12 completed after 40.3 s\n"
        "phases: initializing 0.5 s, scan_generation 8.0 s, scan_execution 1.5 s, backtest_execution 28.3 s x2,"
        " analysis 2.0 s\n"
        "tokens: 5200 (scan_generation 4200, backtest_execution 1000)"
    )
    assert (digest.iteration_id, digest.agent_id, digest.iteration_number) == (ID, "momentum", 12)
    assert digest.status is Status.COMPLETED


def test_failed_iteration_digest_names_the_phase_and_the_error() -> None:
    """A failed iteration: `failed in` the phase it was in, no tokens line without tokens, the error with its
    whitespace collapsed."""
    it = Iteration.start(ID, "breakout", 3, T0)
    it.change_phase("scan_generation", None, at(1))
    it.change_phase("backtest_execution", None, at(4))
    it.change_phase("failed", "KeyError: 'close'\n  in loader\tline 7", at(9.96))
    digest = iteration_digest(it.take_events())
    assert digest.text == (
        "agent breakout iteration 3 failed in backtest_execution after 10.0 s\n"
        "phases: initializing 1.0 s, scan_generation 3.0 s, backtest_execution 6.0 s\n"
        "error: KeyError: 'close' in loader line 7"
    )
    assert digest.status is Status.FAILED


def test_long_error_is_cut() -> None:
    """An error longer than MAX_DIGEST_ERROR is cut to it, ending in an ellipsis."""
    it = Iteration.start(ID, "a", 1, T0)
    it.change_phase("failed", "x" * 5000, at(1))
    error_line = iteration_digest(it.take_events()).text.splitlines()[-1]
    assert error_line == "error: " + "x" * (MAX_DIGEST_ERROR - 1) + "…"


def test_events_after_the_finish_are_ignored_and_a_running_iteration_is_refused() -> None:
    """The digest stops at the finishing event; events of an unfinished iteration raise InvalidInputError."""
    it = Iteration.start(ID, "a", 1, T0)
    it.change_phase("analysis", None, at(2))
    running = it.take_events()
    with pytest.raises(InvalidInputError, match="events"):
        iteration_digest(running)
    with pytest.raises(InvalidInputError, match="Started"):
        iteration_digest(running[1:])
    it.change_phase("completed", None, at(3))
    assert iteration_digest(running + it.take_events()).text.startswith("agent a iteration 1 completed after 3.0 s")
