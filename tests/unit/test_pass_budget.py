"""The async tracker's inline budget per pass of the event loop (adapters/aio/budget.py), on a fake clock and a
list standing for the loop's queue of callbacks."""

from __future__ import annotations

from collections.abc import Callable

from itertrack.adapters.aio.budget import PassBudget

BUDGET_S = 0.00015


class FakeLoop:
    """A clock the test moves, and the callbacks queued for the loop's next pass."""

    def __init__(self) -> None:
        self.now = 100.0
        self.queued: list[Callable[[], None]] = []

    def clock(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.queued.append(callback)

    def next_pass(self) -> None:
        queued, self.queued = self.queued, []
        for callback in queued:
            callback()


def test_a_lone_change_at_a_time_is_allowed_without_queuing_a_callback() -> None:
    loop = FakeLoop()
    budget = PassBudget(BUDGET_S, loop.call_soon, loop.clock)
    for _ in range(5):
        assert budget.allows()
        loop.now += 0.0003  # the next change comes after this one's write
    assert loop.queued == []


def test_a_burst_in_one_pass_is_allowed_up_to_the_budget_and_again_in_the_next_pass() -> None:
    loop = FakeLoop()
    budget = PassBudget(BUDGET_S, loop.call_soon, loop.clock)
    allowed = []
    for _ in range(10):  # ten calls 40 us apart within one pass: 0, 40, 80, 120 us fit in 150 us
        allowed.append(budget.allows())
        loop.now += 0.00004
    assert allowed == [True] * 4 + [False] * 6
    assert len(loop.queued) == 1  # one callback ends the budget with the pass
    loop.next_pass()
    assert budget.allows()
    assert loop.queued == []  # the new pass's budget has one piece of work so far


def test_a_budget_expired_with_one_piece_of_work_starts_anew() -> None:
    """Nothing says the pass is the same one: a new budget starts, and a second piece within it queues the callback."""
    loop = FakeLoop()
    budget = PassBudget(BUDGET_S, loop.call_soon, loop.clock)
    assert budget.allows()
    loop.now += 0.0002
    assert budget.allows()
    loop.now += 0.00001
    assert budget.allows()
    assert len(loop.queued) == 1
    loop.now += 0.0002
    assert not budget.allows()  # this budget held two: the pass is known, and it has spent its budget
