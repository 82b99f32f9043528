"""tests/unit's conftest refuses impure work, so an impure test cannot settle here unnoticed."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "impure",
    [
        lambda: Path("never-written.txt").write_text("x"),
        lambda: socket.create_connection(("127.0.0.1", 5432), timeout=1),
        lambda: sqlite3.connect(":memory:"),
        lambda: subprocess.run([sys.executable, "-c", "pass"], check=False),
        lambda: threading.Thread(target=print).start(),
    ],
    ids=["write", "socket", "sqlite", "process", "thread"],
)
def test_impure_work_is_refused(impure: Callable[[], object]) -> None:
    """Writing a file, connecting, opening SQLite, running a process or starting a thread fails the test."""
    with pytest.raises(AssertionError, match="tests/unit is pure"):
        impure()
