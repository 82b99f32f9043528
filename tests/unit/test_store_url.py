"""Store URLs: what parses, what is refused, and that passwords never show."""

from __future__ import annotations

import pytest

from itertrack.adapters.store.url import parse_store_url, redact
from itertrack.domain import StoreConfigError


def test_sqlite_relative_and_absolute_paths() -> None:
    """Three slashes give a relative path, four an absolute one."""
    assert parse_store_url("sqlite:///itertrack.db").path == "itertrack.db"
    assert parse_store_url("sqlite:////var/lib/it.db").path == "/var/lib/it.db"


def test_postgresql_url_with_options() -> None:
    """User, password, host, port, database and the schema/pool options are read."""
    url = parse_store_url("postgresql://bob:s3cret@db.local:6543/tracking?schema=team_a&pool_size=4")
    assert (url.user, url.password.get_secret_value(), url.host, url.port, url.dbname) == (
        "bob",
        "s3cret",
        "db.local",
        6543,
        "tracking",
    )
    assert (url.schema_name, url.pool_size) == ("team_a", 4)
    assert "s3cret" not in url.redacted
    assert "s3cret" not in repr(url)


def test_timeouts_are_taken_from_the_url_only_when_it_gives_them() -> None:
    """A URL's timeout wins over its ITERTRACK_* setting; one it does not give is left to the setting (None)."""
    given = parse_store_url("postgresql://bob@h/db?statement_timeout=30&lock_timeout=0&connect_timeout=4")
    assert (given.statement_timeout, given.lock_timeout, given.connect_timeout) == (30, 0, 4)
    left = parse_store_url("postgresql://bob@h/db")
    assert (left.statement_timeout, left.lock_timeout, left.connect_timeout) == (None, None, None)
    assert parse_store_url("sqlite:///x.db?lock_timeout=9").lock_timeout == 9


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "must be a store URL"),
        ("mysql://root@h/db", "unknown scheme"),
        ("sqlite://", "expected sqlite:///"),
        ("sqlite:///x.db?journal=off", "unknown option(s) ['journal']"),
        ("postgresql://root@127.0.0.1:5432/", "expected postgresql://"),
        ("postgresql://127.0.0.1:5432/test", "names no user"),
        ("postgresql://root@h/db?schema=Bad-Name", "store (schema)='Bad-Name'"),
        ("postgresql://root@h/db?pool_size=lots", "store (pool_size)='lots'"),
        ("postgresql://root@h:99999/db", "malformed URL"),
        ("postgresql://root@h/db?statement_timeout=soon", "store (statement_timeout)='soon'"),
        ("postgresql://root@h/db?lock_timeout=-1", "store (lock_timeout)=-1: must be between 0 and 3600"),
        ("postgresql://root@h/db?connect_timeout=0", "store (connect_timeout)=0: must be between 1 and 600"),
    ],
)
def test_malformed_urls_are_refused_naming_the_setting(url: str, fragment: str) -> None:
    """Each malformed URL gets a StoreConfigError that names the setting and the value."""
    with pytest.raises(StoreConfigError) as caught:
        parse_store_url(url)
    assert fragment in str(caught.value)


def test_errors_never_show_the_password() -> None:
    """A refused URL is shown redacted."""
    with pytest.raises(StoreConfigError) as caught:
        parse_store_url("postgresql://bob:hunter2@h/db?bogus=1")
    assert "hunter2" not in str(caught.value)
    assert "bob:***@h" in str(caught.value)


def test_redact_leaves_passwordless_urls_alone() -> None:
    """Only a password is replaced."""
    assert redact("postgresql://root@127.0.0.1:5432/test") == "postgresql://root@127.0.0.1:5432/test"
    assert redact("postgresql://u:p@h/d") == "postgresql://u:***@h/d"


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://u:hun/ter2@h:5432/db", "ter2"),
        ("postgresql://u:p@ssw0rd@h:5432/db", "ssw0rd"),
        ("postgresql://u:pa:ss@h:5432/db?bogus=1", "ss@"),
        ("postgresql://u@h:5432/db?password=hunter2", "hunter2"),
        ("postgresql://u:s3cret@h:99999/db", "s3cret"),
    ],
)
def test_no_password_survives_redaction_or_errors(url: str, secret: str) -> None:
    """Passwords containing / : or @, and a password given as an option, never show in the redacted form or an error."""
    assert secret not in redact(url)
    try:
        shown = parse_store_url(url).redacted
    except StoreConfigError as e:
        shown = str(e)
    assert secret not in shown
