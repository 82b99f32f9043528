"""Logging a failure that a background loop retries: loud once per kind, then quiet until the work goes through or
the failure lasts."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

# How often failures that keep repeating are logged as a warning again (seconds).
DEFAULT_REWARN_S = 300.0
# Numbers and long hex runs (ids, counts, sequence values) in a message: a failure repeated with other ones is
# the same failure.
_VARYING = re.compile(r"\b[0-9a-fA-F-]{8,}\b|\d+")


def failure_kind(error: BaseException) -> tuple[str, str]:
    """What makes two failures the same: the exception's type and its message with numbers and ids blanked."""
    return type(error).__qualname__, _VARYING.sub("#", str(error))


class RepeatedFailureLog:
    """What a retrying loop logs of its failures, so that one lasting failure is not a warning every retry.

    `failed(error)`: a failure of a kind not seen since the work last went through (`failure_kind`: its type and
    message, numbers and ids aside) is a WARNING with its traceback; any other is logged at DEBUG, except once
    every `rewarn_s` seconds, when a WARNING (no traceback) says how many failures there were since the work
    last went through. `recovered()`: the work went through; after failures, one INFO saying how many there
    were, nothing otherwise. `what` names the work in each message ("spool forwarding"), `then` what follows a
    failure ("will retry"). `clock` is monotonic, in seconds (default `time.monotonic`). Not locked: call it
    from the one thread that retries.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        then: str = "will retry",
        rewarn_s: float = DEFAULT_REWARN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._then = then
        self._rewarn_s = rewarn_s
        self._clock = clock
        self._kinds: set[tuple[str, str]] = set()  # the kinds of failure seen since the work last went through
        self._count = 0  # failures since the work last went through
        self._warned_at = 0.0

    def failed(self, error: BaseException) -> None:
        """Log one failure of the work (the loop will retry it)."""
        now = self._clock()
        kind = failure_kind(error)
        self._count += 1
        if kind not in self._kinds:
            self._kinds.add(kind)
            self._warned_at = now
            self._log.warning("%s failed; %s: %r", self._what, self._then, error, exc_info=error)
        elif now - self._warned_at >= self._rewarn_s:
            self._warned_at = now
            self._log.warning(
                "%s still failing (%d failures since it last went through); %s: %r",
                self._what,
                self._count,
                self._then,
                error,
            )
        else:
            self._log.debug("%s failed again (%d since it last went through): %r", self._what, self._count, error)

    def recovered(self) -> None:
        """The work went through: say so once if it had been failing."""
        if self._count:
            self._log.info("%s recovered after %d failures", self._what, self._count)
        self._kinds.clear()
        self._count = 0
