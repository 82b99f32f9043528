"""How much work the async tracker does inline in one pass of the event loop (adapters/aio/dispatch.py)."""

from __future__ import annotations

import time
from collections.abc import Callable


class PassBudget:
    """At most `seconds` of inline work per pass of an event loop, so that many host calls in one pass do not hold
    the loop (past the budget, the dispatcher leaves the rest to a pass of its own).

    `allows()` says whether work may be done inline now. A budget starts with the first work it allows and ends
    with its pass of the loop. Ending it takes a callback queued for the next pass (`call_soon`, the loop's), queued
    only once a second piece of work is allowed within the budget: a lone change (the next comes after its
    write, later than `seconds`) then costs the loop no extra callback and no extra turn before it sleeps, which
    would delay the writer thread's start (a lone change on a SQLite file, medians of interleaved rounds:
    323 -> 308 us and 287 -> 281 us). A budget that expired with one piece of work in it and no callback queued
    is not known to be in the same pass: a new one starts. So a pass gets at most one extra piece of work per
    `seconds` of its own length, besides one full budget.

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
        self._deadline: float | None = None  # when the current budget ends
        self._pass_marked = False  # the callback that ends the budget with this pass is queued

    def allows(self) -> bool:
        """Whether work may be done inline now (see the class)."""
        now = self._clock()
        deadline = self._deadline
        if deadline is None or (now >= deadline and not self._pass_marked):
            self._deadline = now + self.seconds
            return True
        if now >= deadline:
            return False
        if not self._pass_marked:
            self._pass_marked = True
            self._call_soon(self._new_pass)  # runs in the next pass: its budget starts afresh
        return True

    def _new_pass(self) -> None:
        self._deadline = None
        self._pass_marked = False
