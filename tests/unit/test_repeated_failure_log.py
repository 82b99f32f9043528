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
    assert "still failing (3 failures since it last went through)" in caplog.records[2].getMessage()


def test_a_failure_of_a_new_kind_is_warned_of_at_once_and_a_kind_seen_is_not_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=logger.name)
    failures = RepeatedFailureLog(logger, "spool forwarding", clock=Clock())
    failures.failed(PermissionError("denied"))
    failures.failed(PermissionError("denied"))
    failures.failed(OSError("disk full"))
    failures.failed(PermissionError("denied"))  # alternating kinds: each warned of once
    failures.failed(OSError("disk full"))
    assert levels(caplog) == ["WARNING", "DEBUG", "WARNING", "DEBUG", "DEBUG"]


def test_numbers_and_ids_in_the_message_do_not_make_a_new_kind(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=logger.name)
    failures = RepeatedFailureLog(logger, "spool forwarding", clock=Clock())
    failures.failed(RuntimeError("lock timeout on relation 16384 after 2000 ms"))
    failures.failed(RuntimeError("lock timeout on relation 16391 after 2001 ms"))
    failures.failed(RuntimeError("iteration 0f8e2c1a-9b7d-4c3e-8a6f-1d2e3f4a5b6c was refused"))
    failures.failed(RuntimeError("iteration 7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d was refused"))
    failures.failed(ValueError("lock timeout on relation 16384 after 2000 ms"))  # another type: another kind
    assert levels(caplog) == ["WARNING", "DEBUG", "WARNING", "DEBUG", "WARNING"]


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
    assert "recovered after 2 failures" in caplog.records[2].getMessage()
    failures.failed(PermissionError("denied"))  # a kind seen before the recovery is warned of again
    assert levels(caplog)[-1] == "WARNING"
