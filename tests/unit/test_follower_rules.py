"""What a follower does with each failure of its runner, and how long it waits (issue 12, item 4)."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from eventsourcing.persistence import OperationalError

from itertrack.adapters.store.postgres_failures import Failure
from itertrack.adapters.store.sqlite_failures import sqlite_failure
from itertrack.adapters.views.follower import MAX_DELAY_S, Verdict, backoff_delay, verdict
from itertrack.domain.model.errors import (
    StoreConfigError,
    StoreNotMigratedError,
    StorePermissionError,
    StoreUnavailableError,
)
from itertrack.projections.projection import ReadModelsResetError


def from_sqlite(message: str, code: int) -> OperationalError:
    """A SQLite failure as the library raises it: its own error, from sqlite3's (with SQLite's result code)."""
    cause = sqlite3.OperationalError(message)
    cause.sqlite_errorcode = code  # set by the sqlite3 module on real errors
    outer = OperationalError(cause)
    outer.__cause__ = cause
    return outer


def from_postgres(error: psycopg.Error) -> OperationalError:
    outer = OperationalError(str(error))
    outer.__cause__ = error
    return outer


@pytest.mark.parametrize(
    ("message", "code", "expected"),
    [
        ("database is locked", 5, Failure.OUTAGE),
        ("database table is locked", 6, Failure.OUTAGE),
        ("database is locked", 5 | (1 << 8), Failure.OUTAGE),  # an extended code (SQLITE_BUSY_RECOVERY)
        ("database or disk is full", 13, Failure.OUTAGE),
        ("no such table: iteration_current", 1, Failure.CONFIG),
        ("unable to open database file", 14, Failure.CONFIG),
        ("file is not a database", 26, Failure.CONFIG),
        ("attempt to write a readonly database", 8, Failure.PERMISSION),
    ],
)
def test_sqlite_failures_by_result_code(message: str, code: int, expected: Failure) -> None:
    assert sqlite_failure(from_sqlite(message, code)) is expected


def test_an_outage_is_retried_as_store_unavailable() -> None:
    for error in (
        from_sqlite("database is locked", 5),
        from_postgres(psycopg.errors.AdminShutdown("terminating connection due to administrator command")),
        from_postgres(psycopg.OperationalError("connection refused")),
    ):
        what, typed = verdict(error, "the store")
        assert what is Verdict.RETRY, error
        assert isinstance(typed, StoreUnavailableError)


def test_what_waiting_cannot_fix_is_given_up_as_a_typed_error() -> None:
    what, typed = verdict(from_sqlite("no such table: iteration_current", 1), "sqlite:///x.db")
    assert what is Verdict.GIVE_UP
    assert isinstance(typed, StoreConfigError)
    assert "no such table: iteration_current" in str(typed)
    assert "sqlite:///x.db" in str(typed)
    what, typed = verdict(from_sqlite("attempt to write a readonly database", 8))
    assert (what, type(typed)) == (Verdict.GIVE_UP, StorePermissionError)
    what, typed = verdict(from_postgres(psycopg.errors.InsufficientPrivilege("permission denied for table x")))
    assert (what, type(typed)) == (Verdict.GIVE_UP, StorePermissionError)
    what, typed = verdict(from_postgres(psycopg.errors.UndefinedTable('relation "x" does not exist')))
    assert (what, type(typed)) == (Verdict.GIVE_UP, StoreConfigError)
    not_migrated = StoreNotMigratedError("no tables")
    assert verdict(not_migrated) == (Verdict.GIVE_UP, not_migrated)


def test_an_error_no_store_failure_explains_is_given_up_as_itself() -> None:
    bug = KeyError("a bug")
    assert verdict(bug) == (Verdict.GIVE_UP, bug)


def test_views_reset_under_the_runner_restart_it_at_once() -> None:
    reset = ReadModelsResetError("reset")
    assert verdict(reset) == (Verdict.RESTART, reset)


def test_the_back_off_doubles_with_jitter_up_to_its_cap() -> None:
    for attempt in range(12):
        ceiling = min(MAX_DELAY_S, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), attempt
        assert len(set(delays)) > 1, "jittered"
    assert backoff_delay(10_000) <= MAX_DELAY_S
