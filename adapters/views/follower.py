"""The one keeper of a long-lived consumer of the log: runs its runner, and starts another after a blip.

`Follower` runs a `BatchRunner` (the views' `ViewRunner`, or a feed consumer's runner; made by a factory, so each
start reads its position afresh) until asked to stop. When the runner fails, `verdict` says what the failure means:

- the views were reset under it (`ReadModelsResetError`, a rebuild elsewhere): start again at once;
- an outage (PostgreSQL away, a connection terminated, a SQLite lock held past the busy timeout): start
  again after a capped exponential back-off with jitter, logging one warning when the outage starts and
  one info line when a runner has caught up with the log again, not one per attempt;
- anything waiting cannot fix (a missing table or privilege, a file that cannot be opened, an error no
  store failure explains): stop, and raise it as the tracker's typed error.

`itertrack project --follow`, `ReadModels` (the in-process keeper) and `itertrack consume --follow` use it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import Generic, TypeVar

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

from itertrack.adapters.settings import load_settings
from itertrack.adapters.store.postgres_failures import Failure, failure_of, server_reason
from itertrack.adapters.store.sqlite_failures import sqlite_error, sqlite_failure
from itertrack.adapters.store.unavailable import CANNOT_WAIT, store_unavailable_as_typed_error
from itertrack.adapters.views.runner import BatchRunner
from itertrack.domain.model.errors import (
    StoreConfigError,
    StoreError,
    StorePermissionError,
    StoreUnavailableError,
)
from itertrack.projections.projection import ReadModelsResetError

FIRST_DELAY_S = 0.5  # the first wait after a failure
MAX_DELAY_S = 30.0  # the longest wait between two attempts


class Verdict(Enum):
    """What a runner's failure means for the follower."""

    RESTART = "restart"  # start another runner at once
    RETRY = "retry"  # an outage: start another after the back-off
    GIVE_UP = "give up"  # waiting cannot fix it: stop and raise


def backoff_delay(attempt: int, first: float = FIRST_DELAY_S, cap: float = MAX_DELAY_S) -> float:
    """Seconds to wait before attempt `attempt + 1` of an outage (attempt 0 is the first wait).

    Equal jitter: half of min(cap, first * 2**attempt), plus a uniform share of the other half, so
    followers that lost the same server do not all come back in the same instant, and none waits
    longer than `cap` seconds.
    """
    ceiling = min(cap, first * 2.0 ** min(attempt, 32))
    return ceiling / 2 + random.uniform(0.0, ceiling / 2)


def verdict(error: Exception, shown: str = "the store") -> tuple[Verdict, Exception]:
    """What a runner's `error` means, and the typed error it is (`shown` names the store, redacted).

    RESTART for `ReadModelsResetError`; RETRY (with a `StoreUnavailableError`) for an outage of PostgreSQL
    (postgres_failures.py) or SQLite (sqlite_failures.py); GIVE_UP for everything else: a `StoreConfigError`
    or `StorePermissionError` for a failure waiting cannot fix, another `StoreError` as itself, and an
    error no store failure explains as itself.
    """
    if isinstance(error, ReadModelsResetError):
        return Verdict.RESTART, error
    typed = _typed(error, shown)
    return (Verdict.RETRY if isinstance(typed, StoreUnavailableError) else Verdict.GIVE_UP), typed


def _typed(error: Exception, shown: str) -> Exception:
    """The tracker's typed error for a store failure (`error` itself when it is typed, or no store failure)."""
    if isinstance(error, StoreError):
        return error
    on_sqlite = sqlite_error(error)
    failure = sqlite_failure(error) if on_sqlite is not None else None
    if on_sqlite is not None and failure is not None:
        reason = " ".join(str(on_sqlite).split()) or type(on_sqlite).__name__
        if failure is Failure.OUTAGE:
            return StoreUnavailableError(f"store is unavailable: {reason}")
        if failure is Failure.PERMISSION:
            return StorePermissionError("store", shown, f"SQLite refused: {reason}; {CANNOT_WAIT}")
        return StoreConfigError("store", shown, f"SQLite refused: {reason}; {CANNOT_WAIT}")
    return _postgres_typed(error, shown)


def _postgres_typed(error: Exception, shown: str) -> Exception:
    """`store_unavailable_as_typed_error`'s answer for `error` (PostgreSQL's SQLSTATEs, the library's errors)."""
    try:
        with store_unavailable_as_typed_error(shown):
            raise error  # noqa: TRY301  # the context manager answers for the error raised inside it
    except Exception as typed:  # the answer, whatever it is
        return typed
    raise AssertionError("unreachable")  # pragma: no cover


def _reason(error: Exception) -> str:
    """One line on why the store was lost."""
    cause = sqlite_error(error)
    if cause is not None:
        return " ".join(str(cause).split())
    if failure_of(error) is not None or isinstance(error, OperationalError | InterfaceError | psycopg.Error):
        return server_reason(error)
    return " ".join(str(error).split()) or type(error).__name__


RunnerT = TypeVar("RunnerT", bound=BatchRunner)


class Follower(Generic[RunnerT]):
    """Keeps a runner going: restarts it after a transient failure, stops on `stop()` or a permanent error.

    `start` makes a runner (called for every start); `before_restart` runs before each start after a
    failure (`itertrack project` takes its projection lock again there, in case it went with its
    connection); `on_change(runner, error)` is told of each runner that starts (error None) and of each
    failure (runner None). `name` begins the log lines; `shown` names the store in typed errors.
    Delays are in seconds: `first_delay` and `max_delay` default to the settings `ITERTRACK_FOLLOW_RETRY_FIRST`
    (0.5) and `ITERTRACK_FOLLOW_RETRY_MAX` (30); `StoreConfigError` when one is malformed.
    """

    def __init__(
        self,
        start: Callable[[], RunnerT],
        *,
        name: str = "read models",
        shown: str = "the store",
        log: logging.Logger | None = None,
        before_restart: Callable[[], None] | None = None,
        on_change: Callable[[RunnerT | None, Exception | None], None] | None = None,
        first_delay: float | None = None,
        max_delay: float | None = None,
    ) -> None:
        self._start = start
        self.name = name
        self.shown = shown
        self.log = log or logging.getLogger("itertrack")
        self._before_restart = before_restart
        self._on_change = on_change
        if first_delay is None or max_delay is None:
            settings = load_settings()
            first_delay = settings.follow_retry_first if first_delay is None else first_delay
            max_delay = settings.follow_retry_max if max_delay is None else max_delay
        self.first_delay, self.max_delay = first_delay, max(first_delay, max_delay)
        self._stopping = threading.Event()
        self._runner: RunnerT | None = None
        self._down_since: float | None = None  # monotonic time the current outage began
        self.outages = 0  # how many outages this follower rode out (or is in)

    @property
    def runner(self) -> RunnerT | None:
        """The running runner (None between runners)."""
        return self._runner

    def stop(self) -> None:
        """Ask `run` to return: stops the running runner, or ends a back-off wait at once. Safe from a
        signal handler and from any thread."""
        self._stopping.set()
        runner = self._runner
        if runner is not None:
            runner.stop()

    def run(self) -> None:
        """Run runners until `stop()`; raises the typed error of a failure waiting cannot fix."""
        attempt = 0
        failed = False
        while not self._stopping.is_set():
            error: Exception | None = None
            try:
                if failed and self._before_restart is not None:
                    self._before_restart()
                runner = self._start()
            except Exception as e:
                error = e
            else:
                error = self._serve(runner)
            failed = error is not None
            if error is not None:  # None: stopped by `stop()`, or by a reader that saw the views reset
                attempt = self._after(error, attempt)

    def _after(self, error: Exception, attempt: int) -> int:
        """Handle a runner's failure: raise it, or wait out the back-off; the outage's attempts so far."""
        what, typed = verdict(error, self.shown)
        # A reset is no failure for readers: another runner starts at once from the views' new position.
        self._notify(None, None if what is Verdict.RESTART else typed)
        if what is Verdict.GIVE_UP:
            if self._down_since is not None:
                self.log.error("%s: giving up: %s", self.name, typed)
            raise typed from error
        if what is Verdict.RESTART:
            self.log.info("%s: the views were reset under the runner; starting again from theirs", self.name)
            return attempt
        if self._down_since is None:
            attempt = 0  # a new outage: the back-off starts from its first delay
        delay = backoff_delay(attempt, self.first_delay, self.max_delay)
        if self._down_since is None:
            self._down_since = time.monotonic()
            self.outages += 1
            self.log.warning("%s: lost the store: %s; retrying in %.1f s", self.name, _reason(error), delay)
        else:
            self.log.debug("%s: attempt %d failed: %s; next in %.1f s", self.name, attempt + 1, _reason(error), delay)
        self._stopping.wait(delay)
        return attempt + 1

    def _serve(self, runner: RunnerT) -> Exception | None:
        """Run one runner until it stops; the error it stopped with (None: asked to stop)."""
        self._runner = runner  # no lock: `stop()` runs in signal handlers
        if self._stopping.is_set():
            runner.stop()
        try:
            with runner:
                self._notify(runner, None)
                if self._down_since is not None and self._caught_up(runner):
                    down = time.monotonic() - self._down_since
                    self._down_since = None
                    self.log.info("%s: the store is back after %.1f s; following again", self.name, down)
                runner.run_forever()
        except Exception as e:
            return e
        finally:
            self._runner = None
        error = runner.progress.error
        return error if isinstance(error, Exception) else None

    @staticmethod
    def _caught_up(runner: BatchRunner) -> bool:
        """Block until `runner` has applied the log as it is now (the outage is over: it reads and writes
        again); False if it stopped first."""
        target = runner.app.recorder.max_notification_id() or 0
        return runner.position() >= target or runner.progress.wait_for(target, timeout=None)

    def _notify(self, runner: RunnerT | None, error: Exception | None) -> None:
        if self._on_change is not None:
            self._on_change(runner, error)
