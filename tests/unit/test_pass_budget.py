"""The async tracker's inline budget per pass of the event loop (adapters/aio/budget.py), on a fake clock and a
list standing for the loop's queue of callbacks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from itertrack.adapters.aio.budget import PassBudget

BUDGET_S = 0.00015


class FakeLoop:
    """A clock the test moves, and the callbacks queued for the loop's next pass."""

    def __init__(self) -> None:
        self.now = 100.0
        self.queued: list[Callable[[], None]] = []
        self.closed = False

    def clock(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[[], None]) -> None:
        if self.closed:
            raise RuntimeError("Event loop is closed")
        self.queued.append(callback)

    def next_pass(self) -> None:
        queued, self.queued = self.queued, []
        for callback in queued:
            callback()

    def allowed_in_one_pass(self, budget: PassBudget, pieces: int, each_s: float) -> list[bool]:
        """Ask `pieces` times within one pass, `each_s` apart (an allowed piece takes that long)."""
        allowed = []
        for _ in range(pieces):
            allowed.append(budget.allows())
            self.now += each_s
        return allowed


def test_a_burst_in_one_pass_is_allowed_up_to_the_budget_and_again_in_the_next_pass() -> None:
    loop = FakeLoop()
    budget = PassBudget(BUDGET_S, loop.call_soon, loop.clock)
    # 40 us apart: at 0, 40, 80 and 120 us within the 150 us budget; 160 us and later past it.
    assert loop.allowed_in_one_pass(budget, 10, 0.00004) == [True] * 4 + [False] * 6
    assert len(loop.queued) == 1  # one callback ends the budget with the pass
    loop.next_pass()
    assert loop.allowed_in_one_pass(budget, 10, 0.00004) == [True] * 4 + [False] * 6
    loop.next_pass()
    assert budget.allows()


def test_pieces_longer_than_the_budget_get_one_per_pass() -> None:
    """However long each piece takes, a pass does the one that started its budget and no more."""
    loop = FakeLoop()
    budget = PassBudget(BUDGET_S, loop.call_soon, loop.clock)
    assert loop.allowed_in_one_pass(budget, 200, 0.00016) == [True] + [False] * 199
    loop.next_pass()
    assert loop.allowed_in_one_pass(budget, 3, 0.00016) == [True, False, False]


def test_the_budget_ends_exactly_at_its_deadline() -> None:
    loop = FakeLoop()
    budget = PassBudget(0.25, loop.call_soon, loop.clock)  # binary fractions: no rounding at the boundary
    assert budget.allows()
    loop.now += 0.125
    assert budget.allows()
    loop.now += 0.125
    assert not budget.allows()


def test_each_pass_queues_one_callback_that_runs_in_the_next() -> None:
    loop = FakeLoop()
    budget = PassBudget(BUDGET_S, loop.call_soon, loop.clock)
    for _ in range(3):  # a lone change per pass
        assert budget.allows()
        assert len(loop.queued) == 1
        loop.now += 0.0003
        loop.next_pass()
    assert loop.queued == []


def test_a_closed_loop_is_not_a_budget_started() -> None:
    loop = FakeLoop()
    budget = PassBudget(BUDGET_S, loop.call_soon, loop.clock)
    loop.closed = True
    with pytest.raises(RuntimeError):
        budget.allows()
    loop.closed = False
    assert budget.allows()  # nothing was left half-set by the refusal
    assert len(loop.queued) == 1
