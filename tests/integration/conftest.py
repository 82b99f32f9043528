"""Fixtures of the integration suite beyond the store fixtures every suite shares (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from support import TcpProxy


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the test PostgreSQL: `cut()` is an outage, `start()` ends it."""
    port = urlsplit(postgres_url).port or 5432
    p = TcpProxy(port)
    p.start()
    yield p
    p.cut()


@pytest.fixture
def connect_attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every PostgreSQL connection attempt of this process from now on (the pools' and direct ones), by database."""
    attempts: list[str] = []
    original: Any = psycopg.Connection.connect

    def counted(cls: type[psycopg.Connection[Any]], *args: Any, **kwargs: Any) -> Any:
        attempts.append(str(kwargs.get("dbname", "")))
        return original.__func__(cls, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(counted))
    monkeypatch.setattr(psycopg, "connect", psycopg.Connection.connect)  # the module's alias of it
    return attempts
