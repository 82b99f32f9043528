"""Fixtures that hand the shared PostgreSQL settings to the library's unittest contract cases."""

from __future__ import annotations

import pytest


@pytest.fixture
def contract_postgres(request: pytest.FixtureRequest, postgres_url: str) -> None:
    """Give a unittest case the test PostgreSQL's URL (skips locally, fails under CI, when unreachable)."""
    request.instance.postgres_url = postgres_url
