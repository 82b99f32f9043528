"""CLI consistency (issue 17): `--version`, short id prefixes, exit codes, `--phase` checks, output paths and
output on a terminal that cannot show every character; each through the `itertrack` process."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from uuid import UUID

import pytest
from documents_support import payload

from itertrack.domain import PerformanceTracker

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ITERTRACK, *args], capture_output=True, text=True, timeout=120, check=False, env=env)


def test_version_prints_the_installed_version() -> None:
    """`itertrack --version` prints `itertrack <version>` (the installed distribution's) and exits 0."""
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"itertrack {version('itertrack')}\n"
    assert result.stderr == ""


# Seven iterations share the prefix abcd1234 (more than an ambiguous prefix's error lists); one starts with abce.
SHARED = [UUID(f"abcd1234-0000-4000-8000-00000000000{n}") for n in range(7)]
LONE = UUID("abce5678-0000-4000-8000-000000000000")


def _prefix_store(store: str) -> str:
    """`store` with the iterations of `SHARED` and `LONE` started (running, in analysis), views caught up."""
    with PerformanceTracker(store=store, migrate=True) as tracker:
        for number, iid in enumerate([*SHARED, LONE]):
            tracker.start_iteration("agent-p", number, iteration_id=iid)
            tracker.update_phase(iid, "analysis")
    assert run("project", "--store", store).returncode == 0
    return store


@pytest.fixture
def prefix_store(tmp_path: Path) -> str:
    return _prefix_store(f"sqlite:///{tmp_path / 'prefix.db'}")


@pytest.mark.parametrize(
    "args",
    [["show", "--json"], ["history", "--json"], ["replay", "--json", "--version", "1"], ["abandon", "--json"]],
)
def test_a_unique_prefix_names_the_iteration(prefix_store: str, args: list[str]) -> None:
    """Every command taking an iteration id takes a unique prefix of it: 4+ hex digits, dashes and case as typed."""
    command, *options = args
    result = run(command, *options, "ABCE-56", "--store", prefix_store)
    assert result.returncode == 0, result.stderr
    assert str(LONE) in result.stdout
    assert str(SHARED[0]) not in result.stdout


def test_verify_and_report_timeline_take_a_prefix(prefix_store: str, tmp_path: Path) -> None:
    """`verify ID` checks the one iteration a prefix names; `report --timeline ID` charts it."""
    checked = run("verify", "abce5", "--json", "--store", prefix_store)
    assert checked.returncode == 0, checked.stderr
    assert payload(checked.stdout, "verify")["iterations"] == 1
    page = tmp_path / "r.html"
    charted = run("report", "--html", str(page), "--timeline", "abce5", "--store", prefix_store)
    assert charted.returncode == 0, charted.stderr
    assert "agent-p #7" in page.read_text()
    assert "agent-p #0" not in page.read_text()


def test_a_prefix_finds_an_iteration_the_views_have_not_seen(prefix_store: str) -> None:
    """A prefix of an iteration started after the views last caught up still resolves (they catch up first)."""
    late = UUID("0123abcd-0000-4000-8000-000000000000")
    with PerformanceTracker(store=prefix_store) as tracker:
        tracker.start_iteration("agent-late", 1, iteration_id=late)
    result = run("show", "0123ab", "--json", "--store", prefix_store)
    assert result.returncode == 0, result.stderr
    assert payload(result.stdout, "show")["iteration"]["iteration_id"] == str(late)


def test_an_ambiguous_prefix_lists_up_to_five_matches(prefix_store: str) -> None:
    """A prefix of several iterations is one line naming the prefix and five of them, and a usage error (exit 2)."""
    result = run("show", "abcd", "--store", prefix_store)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "iteration_id='abcd'" in result.stderr
    assert "more than one iteration" in result.stderr
    assert [str(i) in result.stderr for i in SHARED] == [True] * 5 + [False] * 2
    assert result.stderr.rstrip().endswith(", ...")


@pytest.mark.parametrize(
    ("text", "code", "fragment"),
    [("abc", 2, "at least 4 hex digits"), ("abcz", 2, "a UUID"), ("9999", 1, "no such iteration")],
)
def test_a_short_bad_or_unknown_prefix_is_refused(prefix_store: str, text: str, code: int, fragment: str) -> None:
    """Fewer than 4 digits or a non-hex one is a usage error; a prefix of no iteration the not-found error."""
    result = run("history", text, "--store", prefix_store)
    assert result.returncode == code
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.postgres
def test_prefixes_on_postgresql(pg_store: str) -> None:
    """PostgreSQL's uuid ids resolve by prefix as SQLite's hex text does: unique, ambiguous and unknown."""
    store = _prefix_store(pg_store)
    unique = run("show", "abce5678", "--json", "--store", store)
    assert unique.returncode == 0, unique.stderr
    assert payload(unique.stdout, "show")["iteration"]["iteration_id"] == str(LONE)
    ambiguous = run("show", "abcd-1234", "--store", store)
    assert ambiguous.returncode == 2
    assert str(SHARED[4]) in ambiguous.stderr
    assert run("show", "ffff", "--store", store).returncode == 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["report", "--since", "soon"], "since='soon'"),
        (["report", "--until", "2026-13-01"], "until='2026-13-01'"),
        (["status", "--stale", "2x"], "--stale='2x'"),
        (["status", "--status", "sleeping"], "'sleeping' is not one of"),
        (["replay", "abce5678", "--at", "teatime"], "at='teatime'"),
        (["show", "not-an-id"], "iteration_id='not-an-id'"),
    ],
)
def test_a_bad_option_value_is_a_usage_error(prefix_store: str, args: list[str], named: str) -> None:
    """A value the command itself refuses exits 2, like click's own usage errors: one line naming it."""
    result = run(*args, "--store", prefix_store)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert result.stderr.count("\n") == 1


def test_store_errors_and_unknown_ids_still_exit_1(prefix_store: str, tmp_path: Path) -> None:
    """Not usage errors: a store that does not exist, a bad store URL, an id of no iteration (exit 1)."""
    assert run("status", "--store", f"sqlite:///{tmp_path / 'none.db'}").returncode == 1
    assert run("status", "--store", "mysql://root@h/db").returncode == 1
    assert run("show", "00000000-0000-4000-8000-000000000000", "--store", prefix_store).returncode == 1


def test_an_unknown_phase_is_a_usage_error_naming_the_known_ones(tmp_path: Path) -> None:
    """`status --phase` takes the built-in phases and any a host registered that the store has seen; another
    name is refused like a bad --status: exit 2, one line naming the value and the phases known."""
    store = f"sqlite:///{tmp_path / 'phases.db'}"
    with PerformanceTracker(store=store, migrate=True, phases=["risk_review"]) as tracker:
        iid = tracker.start_iteration("agent-r", 1)
        tracker.update_phase(iid, "risk_review")
    typo = run("status", "--phase", "analysys", "--store", store)
    assert typo.returncode == 2
    assert typo.stderr.count("\n") == 1
    assert "--phase='analysys': is not a phase of this store; known: initializing," in typo.stderr
    assert "risk_review" in typo.stderr
    registered = run("status", "--phase", "risk_review", "--json", "--store", store)
    assert registered.returncode == 0, registered.stderr
    assert [row["iteration_id"] for row in payload(registered.stdout, "status")["iterations"]] == [str(iid)]
    built_in = run("status", "--phase", "analysis", "--json", "--store", store)
    assert (built_in.returncode, payload(built_in.stdout, "status")["iterations"]) == (0, [])


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("missing/x.html", "No such file or directory"),
        (".", "Is a directory"),
        ("file.txt/x.html", "Not a directory"),
        ("/dev/full", "No space left on device"),  # refused only when written
    ],
)
def test_a_bad_output_path_is_named_with_the_os_reason(
    prefix_store: str, tmp_path: Path, where: str, reason: str
) -> None:
    """`report --html` to a path that cannot be written: one line naming the option, the path and the OS's
    reason, exit 2; never an error blaming the store."""
    (tmp_path / "file.txt").write_text("x")
    path = str(tmp_path / where) if not where.startswith("/") else where
    result = run("report", "--html", path, "--store", prefix_store)
    assert result.returncode == 2
    assert result.stderr == f"itertrack: error: --html={path!r}: cannot be written: {reason}\n"


EMOJI_AGENT = "agent-\U0001f680-\xe9"


@pytest.fixture
def emoji_store(tmp_path: Path) -> tuple[str, UUID]:
    """A store with one failed iteration whose agent id has an emoji and an accent, and its error a snowman."""
    store = f"sqlite:///{tmp_path / 'emoji.db'}"
    with PerformanceTracker(store=store, migrate=True) as tracker:
        iid = tracker.start_iteration(EMOJI_AGENT, 1)
        tracker.update_phase(iid, "failed", error="boom \u2603")
    return store, iid


@pytest.mark.parametrize("command", ["status", "show", "history", "replay", "report", "metrics"])
def test_output_on_an_ascii_terminal_escapes_what_it_cannot_show(emoji_store: tuple[str, UUID], command: str) -> None:
    """Under an ASCII stdout no traceback: what it cannot encode is printed as a Python escape."""
    store, iid = emoji_store
    args = [command, str(iid)] if command in {"show", "history", "replay"} else [command]
    if command == "metrics":
        args += ["--agent", EMOJI_AGENT]
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "COLUMNS": "1000"}
    result = subprocess.run(
        [ITERTRACK, *args, "--store", store], capture_output=True, timeout=120, check=False, env=env
    )
    assert result.returncode == 0, result.stderr.decode("ascii", "replace")
    output = result.stdout.decode("ascii")  # every byte is ASCII
    assert "agent-\\U0001f680-\\xe9" in output
    if command != "metrics":
        assert "boom \\u2603" in output
    if command in {"status", "history"}:  # one table: the escapes are laid out as cells, every row as wide
        assert len({len(line) for line in output.splitlines() if line.startswith("| ")}) == 1


def test_a_latin_1_terminal_shows_what_it_can(emoji_store: tuple[str, UUID]) -> None:
    """Under Latin-1 the accent is printed as itself and only the emoji is escaped."""
    store, _ = emoji_store
    env = {**os.environ, "PYTHONIOENCODING": "latin-1", "COLUMNS": "1000"}
    result = subprocess.run(
        [ITERTRACK, "status", "--store", store], capture_output=True, timeout=120, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "agent-\\U0001f680-\xe9" in result.stdout.decode("latin-1")


def _ranges(store: str) -> None:
    """`status` and `metrics` take --since and --until like `report`: iterations started in [since, until)."""
    listed = run("status", "--limit", "1000", "--json", "--store", store)
    assert listed.returncode == 0, listed.stderr
    rows = payload(listed.stdout, "status")["iterations"]
    starts = sorted(row["started_at"] for row in rows)
    cut, later = starts[len(starts) // 3], starts[2 * len(starts) // 3]

    def status(*args: str) -> list[str]:
        result = run("status", "--limit", "1000", "--json", *args, "--store", store)
        assert result.returncode == 0, result.stderr
        return [row["iteration_id"] for row in payload(result.stdout, "status")["iterations"]]

    assert status("--since", cut) == [r["iteration_id"] for r in rows if r["started_at"] >= cut]
    assert status("--until", cut) == [r["iteration_id"] for r in rows if r["started_at"] < cut]
    assert status("--since", cut, "--until", later) == [
        r["iteration_id"] for r in rows if cut <= r["started_at"] < later
    ]
    agent = rows[0]["agent_id"]
    assert status("--agent", agent, "--since", cut) == [
        r["iteration_id"] for r in rows if r["started_at"] >= cut and r["agent_id"] == agent
    ]

    def metrics(*args: str) -> dict[str, tuple[float, int]]:
        result = run("metrics", "--json", *args, "--store", store)
        assert result.returncode == 0, result.stderr
        rows = payload(result.stdout, "metrics")["metrics"]
        return {row["metric"]: (row["total"], row["iterations"]) for row in rows}

    whole, before, after = metrics(), metrics("--until", cut), metrics("--since", cut)
    assert before
    assert after
    assert metrics("--since", "2000-01-01") == whole
    for name, (total, iterations) in whole.items():
        parts = [before.get(name, (0, 0)), after.get(name, (0, 0))]
        assert (sum(p[0] for p in parts), sum(p[1] for p in parts)) == (total, iterations)
    assert metrics("--agent", agent, "--until", "2999-01-01") == metrics("--agent", agent)
    assert metrics("--since", "2999-01-01") == {}
    bad = run("status", "--since", "yesterday", "--store", store)
    assert (bad.returncode, "since='yesterday'" in bad.stderr) == (2, True)


def test_status_and_metrics_take_a_time_range(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'range.db'}"
    demo = run("demo", "--iterations", "30", "--agents", "3", "--store", store, "--json")
    assert demo.returncode == 0, demo.stderr
    _ranges(store)


@pytest.mark.postgres
def test_status_and_metrics_take_a_time_range_on_postgresql(pg_store: str) -> None:
    demo = run("demo", "--iterations", "30", "--agents", "3", "--store", pg_store, "--json")
    assert demo.returncode == 0, demo.stderr
    _ranges(pg_store)
