"""A retried failure is logged loudly once, then quietly until it changes, ends or lasts (spool/failure_log.py)."""

from __future__ import annotations

import logging

import pytest

from itertrack.adapters.spool.failure_log import RepeatedFailureLog

logger = logging.getLogger("itertrack.test.failures")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def levels(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.levelname for record in caplog.records]


def test_a_repeating_failure_is_one_warning_with_its_traceback_then_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=logger.name)
    clock = Clock()
    failures = RepeatedFailureLog(logger, "spool forwarding", rewarn_s=300, clock=clock)
    for _ in range(5):
        failures.failed(PermissionError("permission denied for table stored_events"))
        clock.now += 2
    assert levels(caplog) == ["WARNING"] + ["DEBUG"] * 4
    first = caplog.records[0]
    assert first.exc_info is not None
    assert first.exc_info[0] is PermissionError
    assert "spool forwarding failed" in first.getMessage()
    assert "permission denied" in first.getMessage()


def test_a_failure_that_lasts_is_warned_of_again_with_its_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=logger.name)
    clock = Clock()
    failures = RepeatedFailureLog(logger, "spool forwarding", rewarn_s=300, clock=clock)
    failures.failed(PermissionError("denied"))
    clock.now += 299
    failures.failed(PermissionError("denied"))
    clock.now += 1
    failures.failed(PermissionError("denied"))
    assert levels(caplog) == ["WARNING", "DEBUG", "WARNING"]
    assert "still failing (3 times in a row)" in caplog.records[2].getMessage()


def test_another_failure_is_warned_of_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=logger.name)
    failures = RepeatedFailureLog(logger, "spool forwarding", clock=Clock())
    failures.failed(PermissionError("denied"))
    failures.failed(PermissionError("denied"))
    failures.failed(OSError("disk full"))
    failures.failed(PermissionError("denied"))
    assert levels(caplog) == ["WARNING", "DEBUG", "WARNING", "WARNING"]


def test_recovery_is_said_once_with_the_count_and_only_after_failures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=logger.name)
    failures = RepeatedFailureLog(logger, "spool forwarding", clock=Clock())
    failures.recovered()
    assert caplog.records == []
    failures.failed(PermissionError("denied"))
    failures.failed(PermissionError("denied"))
    failures.recovered()
    failures.recovered()
    assert levels(caplog) == ["WARNING", "DEBUG", "INFO"]
    assert "recovered after 2 failures in a row" in caplog.records[2].getMessage()
    failures.failed(PermissionError("denied"))  # a new run of failures begins loud again
    assert levels(caplog)[-1] == "WARNING"
