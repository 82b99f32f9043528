"""Which PostgreSQL failures are outages (spooled) and which are configuration errors (raised at once)."""

from __future__ import annotations

import psycopg
import psycopg_pool
import pytest
from eventsourcing.persistence import OperationalError, ProgrammingError

from itertrack.adapters.store.postgres_failures import Failure, failure_of, server_reason


def wrapped(error: psycopg.Error) -> OperationalError:
    """The driver's error as eventsourcing raises it: its own error, from the driver's."""
    outer = OperationalError(str(error))
    outer.__cause__ = error  # as `raise ... from error` sets it
    return outer


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("08006", Failure.OUTAGE),  # connection failure
        ("57P01", Failure.OUTAGE),  # admin shutdown (a restart)
        ("57P03", Failure.OUTAGE),  # the server is starting up
        ("53300", Failure.OUTAGE),  # too many connections
        ("55P03", Failure.OUTAGE),  # lock_timeout
        ("57014", Failure.OUTAGE),  # statement_timeout
        ("40001", Failure.OUTAGE),  # serialization failure
        ("25006", Failure.OUTAGE),  # a standby answered (failover)
        ("28P01", Failure.CONFIG),  # wrong password
        ("28000", Failure.CONFIG),  # no such role, no pg_hba.conf entry
        ("3D000", Failure.CONFIG),  # no such database
        ("3F000", Failure.CONFIG),  # no such schema
        ("42P01", Failure.CONFIG),  # a table is missing
        ("42501", Failure.PERMISSION),  # a read-only role writes
        ("23505", None),  # a unique violation is the caller's (a version taken), not the store's health
        ("22P02", None),  # bad data is a bug, not a store failure
    ],
)
def test_a_server_error_is_classified_by_its_sqlstate(sqlstate: str, expected: Failure | None) -> None:
    """Directly, and behind the library's own error."""
    error = psycopg.errors.lookup(sqlstate)("the server's message")
    assert failure_of(error) is expected
    assert failure_of(wrapped(error)) is expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('connection to server at "h", port 5432 failed: FATAL:  database "x" does not exist', Failure.CONFIG),
        (
            'connection to server at "h", port 5432 failed: FATAL:  password authentication failed for user "u"',
            Failure.CONFIG,
        ),
        (
            'connection to server at "h", port 5432 failed: FATAL:  no pg_hba.conf entry for host "1.2.3.4"',
            Failure.CONFIG,
        ),
        ('connection to server at "h", port 5432 failed: FATAL:  role "u" is not permitted to log in', Failure.CONFIG),
        ('connection to server at "h", port 5432 failed: fe_sendauth: no password supplied', Failure.CONFIG),
        ('connection to server at "h", port 5432 failed: Connection refused', Failure.OUTAGE),
        ("connection timeout expired", Failure.OUTAGE),
        ('could not translate host name "db" to address: Temporary failure in name resolution', Failure.OUTAGE),
        ('connection to server at "h", port 5432 failed: FATAL:  the database system is starting up', Failure.OUTAGE),
        ('connection to server at "h", port 5432 failed: FATAL:  sorry, too many clients already', Failure.OUTAGE),
        ("SSL SYSCALL error: EOF detected", Failure.OUTAGE),
        ("consuming input failed: server closed the connection unexpectedly", Failure.OUTAGE),
    ],
)
def test_a_refused_connection_is_classified_by_the_servers_message(message: str, expected: Failure) -> None:
    """libpq gives no SQLSTATE for a connection that failed: refusals waiting cannot fix are recognised by text."""
    assert failure_of(psycopg.OperationalError(message)) is expected


def test_no_connection_in_time_is_an_outage_and_other_errors_are_not_store_failures() -> None:
    """The pool's timeout keeps no reason: an outage. An error with no driver error behind it is left alone."""
    assert failure_of(psycopg_pool.PoolTimeout("couldn't get a connection after 2.00 sec")) is Failure.OUTAGE
    assert failure_of(ProgrammingError("no driver error behind it")) is None


def test_the_reason_shown_is_one_line_with_the_sqlstate() -> None:
    error = wrapped(psycopg.errors.lookup("42501")("permission denied for table t\nHINT: ask"))
    assert server_reason(error) == "permission denied for table t HINT: ask (SQLSTATE 42501)"
