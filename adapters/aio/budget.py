"""How much work the async tracker does inline in one pass of the event loop (adapters/aio/dispatch.py)."""

from __future__ import annotations

import time
from collections.abc import Callable


class PassBudget:
    """At most `seconds` of inline work per pass of an event loop, so that many host calls in one pass do not hold
    the loop (past the budget, the dispatcher leaves the rest to a pass of its own).

    `allows()` says whether work may be done inline now. The first work of a pass is always allowed: it starts
    the pass's budget and queues a callback for the next pass (`call_soon`, the loop's), which ends the budget.
    Until then, work is allowed while the budget lasts, and refused after: so a pass does at most `seconds` of
    inline work plus the piece that crossed the deadline, whatever each piece takes.

    Tried and not kept (2026-11-30): queuing the callback only once a second piece arrives within the budget,
    to save a lone change the loop's extra turn (6-15 us of 280-320 on a SQLite file). Nothing then tells a
    new pass from a piece that came after the budget expired, and when pieces take longer than `seconds`
    (a slow machine, a garbage collection, tracing) every piece of a pass started a budget of its own: 200
    host calls of 160 us each were all done inline in one pass of 33 ms.

    `clock` is monotonic, in seconds (default `time.perf_counter`).
    """

    def __init__(
        self,
        seconds: float,
        call_soon: Callable[[Callable[[], None]], object],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.seconds = seconds
        self._call_soon = call_soon
        self._clock = clock
        self._deadline: float | None = None  # the end of this pass's budget; None until work comes in a pass

    def allows(self) -> bool:
        """Whether work may be done inline now (see the class). Raises what `call_soon` raises (a closed loop's
        `RuntimeError`)."""
        now = self._clock()
        if self._deadline is None:
            self._call_soon(self._new_pass)  # runs in the next pass: its budget starts afresh
            self._deadline = now + self.seconds
            return True
        return now < self._deadline

    def _new_pass(self) -> None:
        self._deadline = None
