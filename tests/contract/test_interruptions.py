"""Interruptions (KeyboardInterrupt, SystemExit, ...) never leave an iteration `running` for good (issue 12, item 5)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from uuid import UUID

import pytest
from fake_clock import FakeClock
from pydantic import JsonValue

from itertrack.adapters.demo.fakes import FakeLLM, FakeScanner, Scenario, SimulatedClock
from itertrack.domain import PerformanceTracker, Status
from itertrack.domain.service.learning_flow import LearningIterationService
from itertrack.domain.service.ports import Backtester, ScanOutcome

Open = Callable[..., PerformanceTracker]
IID = UUID("0f0e0d0c-0b0a-4908-8706-050403020100")

INTERRUPTIONS = [
    pytest.param(KeyboardInterrupt(), "interrupted: KeyboardInterrupt", id="KeyboardInterrupt"),
    pytest.param(SystemExit(3), "interrupted: SystemExit: 3", id="SystemExit"),
    pytest.param(GeneratorExit(), "interrupted: GeneratorExit", id="GeneratorExit"),
    pytest.param(asyncio.CancelledError(), "interrupted: CancelledError", id="CancelledError"),
]


@pytest.mark.parametrize(("interruption", "error"), INTERRUPTIONS)
def test_an_interruption_inside_track_phase_fails_the_iteration_and_propagates(
    any_store: str, open_tracker: Open, interruption: BaseException, error: str
) -> None:
    """The phase's time is recorded, the iteration is failed naming the interruption, and the same one re-raised."""
    clock = FakeClock()
    tracker = open_tracker(any_store, clock=clock)
    iid = tracker.start_iteration("agent-1", 1)

    def backtest() -> None:
        with tracker.track_phase(iid, "backtest_execution"):
            clock.advance(1500)
            raise interruption

    with pytest.raises(type(interruption)) as raised:
        backtest()

    assert raised.value is interruption
    state = tracker.get_iteration(iid)
    assert (state.phase, state.status, state.error) == ("failed", Status.FAILED, error)
    assert state.metrics == {"backtest_execution_time_ms": 1500.0}


def test_a_generator_closed_mid_phase_fails_the_iteration(any_store: str, open_tracker: Open) -> None:
    """A host generator closed while suspended inside track_phase (its consumer went away) fails the iteration."""
    clock = FakeClock()
    tracker = open_tracker(any_store, clock=clock)
    iid = tracker.start_iteration("agent-1", 1)

    def stream() -> Generator[str]:
        with tracker.track_phase(iid, "analysis"):
            clock.advance(200)
            yield "first chunk"
            yield "never reached"

    chunks = stream()
    assert next(chunks) == "first chunk"
    chunks.close()
    state = tracker.get_iteration(iid)
    assert (state.status, state.error) == (Status.FAILED, "interrupted: GeneratorExit")
    assert state.metrics == {"analysis_time_ms": 200.0}


def test_a_failure_to_record_never_replaces_the_interruption(
    any_store: str, open_tracker: Open, caplog: pytest.LogCaptureFixture
) -> None:
    """The store refusing the failure mark is logged; the host still gets its KeyboardInterrupt."""
    tracker = open_tracker(any_store, clock=FakeClock())
    iid = tracker.start_iteration("agent-1", 1)
    interruption = KeyboardInterrupt()

    def analyse() -> None:
        with tracker.track_phase(iid, "analysis"):
            tracker.close()  # every write from here on fails
            raise interruption

    with pytest.raises(KeyboardInterrupt) as raised:
        analyse()

    assert raised.value is interruption
    assert "could not mark iteration" in caplog.text


class InterruptedBacktester(Backtester):
    """A backtest the operator interrupts (Ctrl-C) or the host exits from, after `ms` milliseconds."""

    def __init__(self, clock: SimulatedClock, interruption: BaseException, ms: float) -> None:
        self.clock = clock
        self.interruption = interruption
        self.ms = ms

    def run_backtests(self, strategy: JsonValue, scan: ScanOutcome) -> JsonValue:
        self.clock.advance(self.ms)
        raise self.interruption


def _flow(tracker: PerformanceTracker, clock: SimulatedClock, backtester: Backtester) -> LearningIterationService:
    scenario = Scenario(clock, seed=1)
    return LearningIterationService(tracker, FakeLLM(scenario), FakeScanner(scenario), backtester)


@pytest.mark.parametrize(("interruption", "error"), INTERRUPTIONS[:2])
def test_an_interruption_in_a_flow_step_fails_the_iteration_and_propagates(
    open_tracker: Open, interruption: BaseException, error: str
) -> None:
    """Ctrl-C or sys.exit in the backtest step: its time is recorded, the iteration failed, the same exception out."""
    fake = FakeClock()
    clock = SimulatedClock(fake.start, fake.new_id)
    tracker = open_tracker("memory://", clock=clock)
    service = _flow(tracker, clock, InterruptedBacktester(clock, interruption, 2500))

    with pytest.raises(type(interruption)) as raised:
        service.run_iteration("agent-1", 1, iteration_id=IID)

    assert raised.value is interruption
    state = tracker.get_iteration(IID)
    assert (state.phase, state.status, state.error) == ("failed", Status.FAILED, error)
    assert state.metrics["backtest_execution_time_ms"] == 2500.0
    assert state.phase_history[-2].phase == "backtest_execution"


@pytest.mark.parametrize(("interruption", "error"), INTERRUPTIONS[:2])
def test_an_interruption_outside_any_phase_fails_the_iteration(
    open_tracker: Open, monkeypatch: pytest.MonkeyPatch, interruption: BaseException, error: str
) -> None:
    """Interrupted in the saving step (not inside track_phase): the flow itself marks the iteration failed."""
    fake = FakeClock()
    clock = SimulatedClock(fake.start, fake.new_id)
    tracker = open_tracker("memory://", clock=clock)
    scenario = Scenario(clock, seed=1)
    service = LearningIterationService(tracker, FakeLLM(scenario), FakeScanner(scenario), _PassingBacktester())

    def interrupted_save(*_args: object, **_kwargs: object) -> None:
        raise interruption

    monkeypatch.setattr(tracker, "save_iteration", interrupted_save)
    with pytest.raises(type(interruption)) as raised:
        service.run_iteration("agent-1", 1, iteration_id=IID)

    assert raised.value is interruption
    state = tracker.get_iteration(IID)
    assert (state.phase, state.status, state.error) == ("failed", Status.FAILED, error)
    assert state.phase_history[-2].phase == "analysis"


class _PassingBacktester(Backtester):
    def run_backtests(self, strategy: JsonValue, scan: ScanOutcome) -> JsonValue:
        return {"sharpe": 1.0}
