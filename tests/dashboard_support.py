"""Running `itertrack serve` in a subprocess and a Playwright browser on Debian's chromium, for the dashboard tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import wait_for

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`itertrack serve` on a store, started and stopped by the test (same port across restarts)."""

    def __init__(self, store: str, log: Path, *args: str, host: str = "127.0.0.1", env: dict[str, str] | None = None):
        self.store = store
        self.host = host
        self.port = free_port()
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.headers: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [ITERTRACK, "serve", "--store", self.store, "--host", self.host, "--port", str(self.port), *self.args]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        wait_for(self._healthy, 30, "the dashboard's /healthz", interval=0.05)

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"itertrack serve exited {self.process.returncode}: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", headers=self.headers, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def get(self, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers={**self.headers, **(headers or {})}, timeout=30, **kwargs)


@contextmanager
def serving(store: str, log: Path, *args: str, **kwargs: Any) -> Iterator[Server]:
    server = Server(store, log, *args, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def chromium_path() -> str:
    """Debian's chromium (make chromium installs it): missing fails under CI and skips locally."""
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("chromium is not installed (make test installs Debian's package)")
        pytest.skip("chromium is not installed")
    return CHROMIUM
