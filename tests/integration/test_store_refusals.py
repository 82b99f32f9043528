"""Refusals waiting cannot fix are configuration errors, raised at once with the server's reason, and never spooled.

The test server trusts every connection from 127.0.0.1 (pg_hba.conf), so a wrong password cannot be
provoked here: the authentication cases use a role that does not exist and a role that may not log in
(both SQLSTATE 28000, the class a wrong password, 28P01, belongs to), each with a password in the URL
that must not be shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from itertrack.adapters.bootstrap import spooling_writer
from itertrack.domain import PerformanceTracker, StoreConfigError, StorePermissionError, StoreUnavailableError

pytestmark = pytest.mark.postgres
PASSWORD = "s3cret-Pw-77"  # noqa: S105  # a test role's, that no message may show
Open = Callable[..., PerformanceTracker]


@pytest.fixture
def make_role(postgres_url: str) -> Iterator[Callable[[bool], str]]:
    """Creates roles (LOGIN or NOLOGIN) with a password; drops them afterwards."""
    made: list[str] = []

    def make(login: bool) -> str:
        role = f"itertrack_refusal_{uuid.uuid4().hex[:8]}"
        statement = "CREATE ROLE {} LOGIN PASSWORD {}" if login else "CREATE ROLE {} NOLOGIN PASSWORD {}"
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL(statement).format(sql.Identifier(role), sql.Literal(PASSWORD)))
        made.append(role)
        return role

    yield make
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for role in made:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def as_role(store: str, role: str, password: str | None = None, dbname: str | None = None) -> str:
    """The same store URL with another user (and password, and database)."""
    parts = urlsplit(store)
    auth = f"{role}:{password}" if password else role
    path = f"/{dbname}" if dbname else parts.path
    return parts._replace(netloc=f"{auth}@{parts.hostname}:{parts.port or 5432}", path=path).geturl()


def spool_file(store: str) -> Path:
    return Path(store.split("spool=", 1)[1].split("&", 1)[0])


def assert_refused_at_once(
    store: str, error: type[StoreConfigError], reason: str, attempts: list[str], **kwargs: Any
) -> StoreConfigError:
    """The constructor raises `error` after one connection attempt, naming the server's reason; no spool is made."""
    attempts.clear()
    with pytest.raises(error) as caught:
        PerformanceTracker(store=store, **kwargs)
    message = str(caught.value)
    assert reason in message, message
    assert PASSWORD not in message
    assert PASSWORD not in repr(caught.value.__cause__)
    assert len(attempts) == 1, attempts  # the probe: no pool waiting its timeout out, no retries
    assert not spool_file(store).exists()
    return caught.value


def test_a_database_that_does_not_exist_is_a_config_error(pg_store: str, connect_attempts: list[str]) -> None:
    """Before: the constructor waited ~6 s, warned, and spooled every change for good."""
    missing = f"itertrack_no_such_db_{uuid.uuid4().hex[:6]}"
    store = as_role(pg_store, "root", PASSWORD, dbname=missing)
    error = assert_refused_at_once(store, StoreConfigError, f'database "{missing}" does not exist', connect_attempts)
    assert error.field == "store"
    assert "root:***@" in str(error)  # the store as the URL shows it, password redacted


@pytest.mark.parametrize("kind", ["no such role", "a role that may not log in"])
def test_a_role_the_server_refuses_is_a_config_error(
    pg_store: str, make_role: Callable[[bool], str], connect_attempts: list[str], kind: str
) -> None:
    """Authentication refused (SQLSTATE class 28, as a wrong password is) raises at once, password redacted."""
    if kind == "no such role":
        role = f"itertrack_ghost_{uuid.uuid4().hex[:8]}"
        reason = f'role "{role}" does not exist'
    else:
        role = make_role(False)
        reason = f'role "{role}" is not permitted to log in'
    assert_refused_at_once(as_role(pg_store, role, PASSWORD), StoreConfigError, reason, connect_attempts)


def test_a_role_without_usage_on_the_schema_is_a_permission_error(
    pg_store: str, open_tracker: Open, make_role: Callable[[bool], str]
) -> None:
    """A role that may log in but not use the store's schema: refused at once, not started offline."""
    open_tracker(pg_store.split("&spool=", 1)[0] + "&spool=off").close()  # migrated, by its owner
    store = as_role(pg_store, make_role(True), PASSWORD)
    with pytest.raises(StorePermissionError) as caught:
        PerformanceTracker(store=store)
    message = str(caught.value)
    assert "permission denied for schema" in message, message
    assert "42501" in message
    assert PASSWORD not in message
    assert isinstance(caught.value, StoreConfigError)
    assert not spool_file(store).exists()


def test_an_unreachable_store_still_starts_offline(pg_store: str) -> None:
    """The other side of the line: a refused connection (nothing listening) is an outage, spooled, reason shown."""
    store = pg_store.replace(f":{urlsplit(pg_store).port or 5432}/", ":1/", 1) + "&connect_timeout=1"
    with PerformanceTracker(store=store, env={"ITERTRACK_FORWARD": "n"}) as tracker:
        tracker.start_iteration("agent-1", 1)
        assert spooling_writer(tracker).spool.count() == 1
    with pytest.raises(StoreUnavailableError, match="Connection refused"):
        PerformanceTracker(store=store, env={"ITERTRACK_START_OFFLINE": "n"})
