"""Logging a failure that a background loop retries: loud once, then quiet until it changes, ends, or lasts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# How often a failure that keeps repeating is logged as a warning again (seconds).
DEFAULT_REWARN_S = 300.0


class RepeatedFailureLog:
    """What a retrying loop logs of its failures, so that one lasting failure is not a warning every retry.

    `failed(error)`: the first failure, or one unlike the last (another type or message), is a WARNING with its
    traceback; a repeat of the same failure is logged at DEBUG, except once every `rewarn_s` seconds, when a
    WARNING (no traceback) says how many times it failed since it began. `recovered()`: after failures, one INFO
    saying how many there were; nothing otherwise. `what` names the work in each message ("spool forwarding").
    `clock` is monotonic, in seconds (default `time.monotonic`).
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        rewarn_s: float = DEFAULT_REWARN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._rewarn_s = rewarn_s
        self._clock = clock
        self._kind: tuple[type[BaseException], str] | None = None  # the failure repeating, if any
        self._count = 0  # failures since the loop last succeeded
        self._warned_at = 0.0

    def failed(self, error: BaseException) -> None:
        """Log one failure of the work (the loop will retry it)."""
        now = self._clock()
        kind = (type(error), str(error))
        self._count += 1
        if kind != self._kind:
            self._kind = kind
            self._warned_at = now
            self._log.warning("%s failed; will retry: %r", self._what, error, exc_info=error)
        elif now - self._warned_at >= self._rewarn_s:
            self._warned_at = now
            self._log.warning("%s still failing (%d times in a row); will retry: %r", self._what, self._count, error)
        else:
            self._log.debug("%s failed again (%d times in a row): %r", self._what, self._count, error)

    def recovered(self) -> None:
        """The work went through: say so once if it had been failing."""
        if self._count:
            self._log.info("%s recovered after %d failures in a row", self._what, self._count)
        self._kind = None
        self._count = 0
