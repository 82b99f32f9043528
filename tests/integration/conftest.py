"""Fixtures of the integration suite beyond the store fixtures every suite shares (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

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
