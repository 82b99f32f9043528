"""Host text that fights the terminal: `status`, `show`, `history`, `replay` and `report` print it escaped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
from documents_support import payload

from itertrack.domain import PerformanceTracker

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
# Clears the screen, turns text red, rings the bell, returns the cursor, reverses the line; and rich markup.
HOSTILE_ERROR = "boom\x1b[2J\x1b[31m [red]cleared[/red] :warning:\nsecond line\r\x07\u202eend"
SHOWN_ERROR = "boom\\x1b[2J\\x1b[31m [red]cleared[/red] :warning:\\nsecond line\\r\\x07\\u202eend"
HOSTILE_AGENT = "agent-[bold]x[/bold]"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The command with room for every cell on one line (rich folds a cell wider than its column)."""
    env = {**os.environ, "COLUMNS": "1000"}
    return subprocess.run([ITERTRACK, *args], capture_output=True, text=True, timeout=120, check=False, env=env)


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[str, UUID]:
    """A SQLite store with one iteration that failed with an error full of control characters and markup."""
    store = f"sqlite:///{tmp_path / 'hostile.db'}"
    with PerformanceTracker(store=store, migrate=True) as tracker:
        iid = tracker.start_iteration(HOSTILE_AGENT, 1)
        tracker.update_phase(iid, "analysis")
        tracker.update_phase(iid, "failed", error=HOSTILE_ERROR)
    return store, iid


@pytest.mark.slow
@pytest.mark.parametrize("command", ["status", "show", "history", "replay", "report"])
def test_error_with_escapes_and_markup_is_shown_escaped(hostile: tuple[str, UUID], command: str) -> None:
    """No raw control character reaches stdout; the error and the agent id print as written, escaped."""
    store, iid = hostile
    args = [command, str(iid)] if command in {"show", "history", "replay"} else [command]
    result = run(*args, "--store", store)
    assert result.returncode == 0, result.stderr
    assert not [c for c in result.stdout if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F)]
    assert "\u202e" not in result.stdout
    assert SHOWN_ERROR in result.stdout
    assert HOSTILE_AGENT in result.stdout


@pytest.mark.slow
def test_json_keeps_the_error_as_it_was(hostile: tuple[str, UUID]) -> None:
    """--json is untouched: the error comes back exactly as the host sent it."""
    store, iid = hostile
    result = run("show", str(iid), "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    assert payload(result.stdout, "show")["iteration"]["error"] == HOSTILE_ERROR
