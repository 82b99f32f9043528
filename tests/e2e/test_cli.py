"""The `itertrack` command as a user runs it: a real process on a real SQLite file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from documents_support import payload

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ITERTRACK, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    """One demo run shared by the module: its store URL and its JSON output."""
    store = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'demo.db'}"
    result = run(
        "demo",
        "--iterations",
        "12",
        "--agents",
        "2",
        "--failure-rate",
        "0.3",
        "--seed",
        "3",
        "--store",
        store,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    return store, payload(result.stdout, "demo")


def test_demo_tracks_every_iteration(demo_store: tuple[str, dict[str, object]]) -> None:
    """The demo's JSON lists 12 iterations, its counts add up, and its failures are among them."""
    _, output = demo_store
    summary = output["totals"]
    assert isinstance(summary, dict)
    ids = output["iteration_ids"]
    failed = output["failed_iteration_ids"]
    assert isinstance(ids, list)
    assert isinstance(failed, list)
    assert len(ids) == summary["iterations"] == 12
    assert summary["completed"] + summary["failed"] == 12
    assert summary["failed"] == len(failed) > 0
    assert set(failed) <= set(ids)


def test_demo_prints_tables_by_default(tmp_path: Path) -> None:
    """Without --json the demo ends with the per-phase table and a command to inspect an iteration."""
    result = run("demo", "--iterations", "4", "--store", f"sqlite:///{tmp_path / 'd.db'}")
    assert result.returncode == 0, result.stderr
    assert "Per phase" in result.stdout
    assert "backtest_execution" in result.stdout
    assert "itertrack show" in result.stdout


def test_show_prints_the_state_of_a_demo_iteration(demo_store: tuple[str, dict[str, object]]) -> None:
    """`show --json` of a demo iteration matches what the demo tracked, with a timeline and the saved record."""
    store, output = demo_store
    ids = output["iteration_ids"]
    failed = output["failed_iteration_ids"]
    assert isinstance(ids, list)
    assert isinstance(failed, list)
    completed = next(i for i in ids if i not in failed)
    result = run("show", completed, "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    shown = payload(result.stdout, "show")
    state = shown["iteration"]
    assert (state["iteration_id"], state["status"], state["phase"]) == (completed, "completed", "completed")
    assert shown["record"]["iteration_id"] == completed
    assert shown["timeline"][0]["phase"] == "initializing"
    assert state["metrics"]["analysis_tokens"] > 0
    table = run("show", completed, "--store", store)
    assert table.returncode == 0
    assert "Phase timeline" in table.stdout


def test_history_prints_a_failed_iterations_events(demo_store: tuple[str, dict[str, object]]) -> None:
    """`history --json` lists versions 1..n ending in the failed phase with its error."""
    store, output = demo_store
    failed = output["failed_iteration_ids"]
    assert isinstance(failed, list)
    result = run("history", failed[0], "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    events = payload(result.stdout, "history")["events"]
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event"] == "Started"
    assert events[-1]["event"] == "PhaseChanged"
    assert events[-1]["data"]["phase"] == "failed"
    assert events[-1]["data"]["error"]


@pytest.mark.parametrize(
    ("args", "fragment", "code"),
    [
        (["show", "not-a-uuid"], "iteration_id='not-a-uuid': must be a UUID", 2),
        (["show", "00000000-0000-4000-8000-000000000000"], "no such iteration", 1),
        (["history", "00000000-0000-4000-8000-000000000000"], "no such iteration", 1),
    ],
)
def test_bad_ids_give_one_line_and_a_nonzero_exit(
    demo_store: tuple[str, dict[str, object]], args: list[str], fragment: str, code: int
) -> None:
    """A malformed id is a usage error (exit 2), an unknown one exits 1: one line on stderr, no traceback."""
    store, _ = demo_store
    result = run(*args, "--store", store)
    assert result.returncode == code
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_unreachable_store_gives_one_line_without_the_password() -> None:
    """An unreachable PostgreSQL prints one redacted line and exits non-zero."""
    result = run(
        "show",
        "00000000-0000-4000-8000-000000000000",
        "--store",
        "postgresql://u:pw123@127.0.0.1:1/x?connect_timeout=1",
    )
    assert result.returncode == 1
    assert "unavailable" in result.stderr
    assert "u:***@127.0.0.1:1" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "pw123" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_bad_store_url_and_bad_options(tmp_path: Path) -> None:
    """A malformed store URL and an out-of-range option are refused with a message, no traceback."""
    bad_url = run("migrate", "--store", "mysql://root@h/db")
    assert bad_url.returncode == 1
    assert "unknown scheme" in bad_url.stderr
    bad_option = run("demo", "--failure-rate", "2", "--store", f"sqlite:///{tmp_path / 'x.db'}")
    assert bad_option.returncode == 2
    assert "failure-rate" in bad_option.stderr
    assert bad_option.stderr.count("\n") == 1  # one line, like every other error
    missing = run("show")
    assert missing.returncode == 2
    assert missing.stderr.startswith("itertrack: error: Missing argument")
    assert "Traceback" not in bad_url.stderr + bad_option.stderr


def test_migrate_then_use(tmp_path: Path) -> None:
    """`migrate` creates the tables of a new SQLite file."""
    result = run("migrate", "--store", f"sqlite:///{tmp_path / 'm.db'}")
    assert result.returncode == 0, result.stderr
    assert "is ready" in result.stdout
    assert (tmp_path / "m.db").exists()


def test_reading_a_missing_sqlite_file_does_not_create_it(tmp_path: Path) -> None:
    """`show` on a store file that does not exist says so and leaves no empty file behind."""
    path = tmp_path / "typo.db"
    result = run("show", "00000000-0000-4000-8000-000000000000", "--store", f"sqlite:///{path}")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert not path.exists()
