"""tests/unit is pure: its tests may not use a store fixture or a temporary folder, and may not connect,
write a file, spawn a process or start a thread. Such a test belongs in tests/integration or tests/e2e."""

from __future__ import annotations

import builtins
import io
import multiprocessing.process
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

HERE = Path(__file__).parent
IMPURE_FIXTURES = {
    *("tmp_path", "tmp_path_factory", "tmpdir", "tmpdir_factory"),
    *("any_store", "durable_store", "sqlite_store", "pg_store", "postgres_url", "open_tracker"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse to run a unit test that asks for a folder or a store."""
    for item in items:
        if HERE in item.path.parents:
            used = IMPURE_FIXTURES & set(getattr(item, "fixturenames", ()))
            if used:
                raise pytest.UsageError(f"{item.nodeid} uses {sorted(used)}: tests/unit is pure, move it")


def _refusing(what: str) -> Callable[..., Any]:
    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError(f"tests/unit is pure but this test tried to {what}; move it to tests/integration")

    return refuse


def _read_only(real_open: Callable[..., Any]) -> Callable[..., Any]:
    def open_for_reading(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"tests/unit is pure but this test tried to write {file}; move it")
        return real_open(file, mode, *args, **kwargs)

    return open_for_reading


@pytest.fixture(autouse=True)
def _pure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every unit test runs with writing, connecting, spawning and threading refused (reading source is fine)."""
    monkeypatch.setattr(builtins, "open", _read_only(builtins.open))
    monkeypatch.setattr(io, "open", _read_only(io.open))
    monkeypatch.setattr(socket.socket, "connect", _refusing("open a socket"))
    monkeypatch.setattr(sqlite3, "connect", _refusing("open a SQLite database"))
    monkeypatch.setattr(psycopg.Connection, "connect", _refusing("connect to PostgreSQL"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refusing("run a process"))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", _refusing("start a process"))
    monkeypatch.setattr(threading.Thread, "start", _refusing("start a thread"))
