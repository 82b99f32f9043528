"""Progress while a command waits: on a terminal stderr (a pseudo-terminal here) a bar with the events to catch up
(`status`, `project --rebuild`) or a spinner while a lock is held elsewhere (`project --wait`); nothing on a pipe
or with --json; ASCII only on a terminal that is not UTF-8."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
from documents_support import payload
from support import wait_for

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import lock_for
from itertrack.domain import PerformanceTracker

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
ITERATIONS = 150  # 300 events: each started, then moved to analysis


class OnTerminal:
    """`itertrack ...` with stderr on a pseudo-terminal (120 columns) and stdout on a pipe; what the terminal
    showed is collected as the command runs."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, terminal: bool = True) -> None:
        self.shown = b""
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        environment = {k: v for k, v in os.environ.items() if k not in ("FORCE_TERMINAL", "NO_COLOR", "TERM")}
        environment.update({"TERM": "xterm-256color", "ITERTRACK_PROGRESS_DELAY": "0", **(env or {})})
        if terminal:
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            self.process = subprocess.Popen(
                [ITERTRACK, *args], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=environment
            )
            os.close(slave)
            self._reader = threading.Thread(target=self._read, args=(master,), daemon=True)
            self._reader.start()
        else:
            self.process = subprocess.Popen(
                [ITERTRACK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment
            )

    def _read(self, master: int) -> None:
        try:
            while True:
                ready, _, _ = select.select([master], [], [], 1.0)
                if not ready:
                    if self.process.poll() is not None:
                        return
                    continue
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the command ended and closed the terminal
                    return
                if not data:
                    return
                with self._lock:
                    self.shown += data
        finally:
            os.close(master)

    def seen(self) -> bytes:
        with self._lock:
            return self.shown

    def finish(self) -> tuple[int, str, bytes]:
        """Wait for the command; its exit code, stdout and what reached stderr (the terminal, or the pipe)."""
        stdout, stderr = self.process.communicate(timeout=180)
        if self._reader is not None:
            self._reader.join(timeout=30)
            return self.process.returncode, stdout.decode(), self.seen()
        return self.process.returncode, stdout.decode(), stderr


def _behind(path: Path) -> str:
    """A SQLite store whose read models lack every one of its events."""
    store = f"sqlite:///{path}"
    with PerformanceTracker(store=store, migrate=True) as tracker:
        for number in range(ITERATIONS):
            iid = tracker.start_iteration("agent-\U0001f680", number)
            tracker.update_phase(iid, "analysis")
    return store


@pytest.fixture
def behind(tmp_path: Path) -> str:
    return _behind(tmp_path / "behind.db")


def test_status_shows_a_bar_with_the_events_to_catch_up_on_a_terminal(behind: str) -> None:
    """On a terminal stderr, `status` shows `catching up the read models` with the total of events to apply."""
    code, stdout, shown = OnTerminal("status", "--store", behind).finish()
    assert code == 0, shown
    assert b"catching up the read models" in shown
    assert f"/{2 * ITERATIONS}".encode() in shown  # e.g. 0/300: the total is known
    assert "Iterations (50 shown)" in stdout


def test_no_progress_on_a_pipe_or_with_json(behind: str, tmp_path: Path) -> None:
    """stderr on a pipe gets nothing but errors; --json draws nothing even on a terminal, and stdout is the
    document alone."""
    code, stdout, stderr = OnTerminal("status", "--store", behind, terminal=False).finish()
    assert (code, stderr) == (0, b"")
    other = _behind(tmp_path / "other.db")
    code, stdout, shown = OnTerminal("status", "--json", "--store", other).finish()
    assert code == 0, shown
    assert b"catching up" not in shown
    assert len(payload(stdout, "status")["iterations"]) == 50


def test_project_rebuild_counts_the_whole_log(behind: str) -> None:
    """`project --rebuild` shows `rebuilding the read models` over every event of the log."""
    assert OnTerminal("project", "--store", behind, terminal=False).finish()[0] == 0
    code, stdout, shown = OnTerminal("project", "--rebuild", "--store", behind).finish()
    assert code == 0, shown
    assert b"rebuilding the read models" in shown
    assert f"/{2 * ITERATIONS}".encode() in shown
    assert f"rebuilt: applied {2 * ITERATIONS} events" in stdout


def test_project_wait_shows_a_spinner_until_the_lock_is_free(behind: str) -> None:
    """While another projection holds the lock, `project --wait` shows what it waits for; it goes on once the
    lock is released."""
    with PerformanceTracker(store=behind) as tracker:
        lock = lock_for(store_of(tracker).factory)
        lock.acquire()
        try:
            command = OnTerminal("project", "--wait", "--store", behind)
            wait_for(lambda: b"waiting for the running projection to stop" in command.seen(), 60, "the spinner")
            assert command.process.poll() is None
        finally:
            lock.release()
    code, stdout, shown = command.finish()
    assert code == 0, shown
    assert f"caught up: applied {2 * ITERATIONS} events" in stdout


def test_progress_on_a_terminal_that_is_not_utf8(behind: str) -> None:
    """Under an ASCII terminal the bar is drawn in ASCII and the emoji agent id in the table is escaped: no
    traceback, nothing the terminal cannot show."""
    command = OnTerminal("status", "--store", behind, env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    code, stdout, shown = command.finish()
    assert code == 0, shown
    assert b"catching up the read models" in shown
    assert shown.isascii()
    assert b"Traceback" not in shown
    assert "agent-\\U0001f680" in stdout
