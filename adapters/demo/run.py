"""The simulated learning loop behind `itertrack demo`: the real flow and tracker, fake collaborators."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from itertrack.adapters.demo.fakes import FakeBacktester, FakeLLM, FakeScanner, Scenario, SimulatedError
from itertrack.domain.service.learning_flow import LearningIterationService
from itertrack.domain.service.tracker import PerformanceTracker


class DemoRun(BaseModel):
    """The ids of the iterations a demo ran, in order, and which of them failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iteration_ids: tuple[UUID, ...]
    failed_ids: tuple[UUID, ...]


def run_demo(
    tracker: PerformanceTracker,
    scenario: Scenario,
    iterations: int,
    agents: int,
    on_iteration: Callable[[], None] = lambda: None,
) -> DemoRun:
    """Run `iterations` learning iterations spread round-robin over `agents` agents."""
    service = LearningIterationService(tracker, FakeLLM(scenario), FakeScanner(scenario), FakeBacktester(scenario))
    ids: list[UUID] = []
    failed: list[UUID] = []
    for n in range(iterations):
        agent_id = f"agent-{n % agents + 1}"
        iteration_number = n // agents + 1
        iteration_id = tracker.clock.new_id()
        try:
            service.run_iteration(agent_id, iteration_number, iteration_id=iteration_id)
        except SimulatedError:
            # A planned failure of a fake collaborator: the flow has marked the iteration failed.
            failed.append(iteration_id)
        ids.append(iteration_id)
        on_iteration()
    return DemoRun(iteration_ids=tuple(ids), failed_ids=tuple(failed))
