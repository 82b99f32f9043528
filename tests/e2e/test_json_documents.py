"""Every `--json` command prints one document of the vocabulary: the envelope, valid against its published
schema, `iteration_id` for iterations, instants in UTC with `Z`, counts as integers; and the same statistic has
the same name and value in `demo`, `report`, `status`, `metrics` and `show`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from documents_support import payload

from itertrack.adapters.cli.common import app
from itertrack.domain import PerformanceTracker

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))

# The document each command prints with --json (`spool ...` and `similar` are run by their own tests, on
# PostgreSQL with a spool and with the embedding model: test_spool_cli.py, test_similar_cli.py).
DOCUMENT_OF = {
    "demo": "demo",
    "show": "show",
    "history": "history",
    "replay": "replay",
    "status": "status",
    "metrics": "metrics",
    "report": "report",
    "verify": "verify",
    "abandon": "abandon",
    "prices list": "prices.list",
    "prices check": "prices.check",
    "consumers": "consumers",
    "similar": "similar",
    "spool status": "spool.status",
    "spool flush": "spool.flush",
    "spool recover": "spool.recover",
    "spool retry": "spool.retry",
    "spool discard": "spool.discard",
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ITERTRACK, *args], capture_output=True, text=True, timeout=180, check=False)


def _commands_with_json(command: Any, prefix: tuple[str, ...] = ()) -> set[str]:
    found = set()
    if any("--json" in getattr(p, "opts", ()) for p in command.params):
        found.add(" ".join(prefix))
    for name, sub in getattr(command, "commands", {}).items():
        found |= _commands_with_json(sub, (*prefix, name))
    return found


def test_every_command_with_json_has_its_document() -> None:
    """A command given --json is listed here with the document it prints (so it cannot be missed below)."""
    assert _commands_with_json(typer.main.get_command(app)) == set(DOCUMENT_OF)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """A demo store (20 iterations, 2 agents, some failed) and the demo's document."""
    store = f"sqlite:///{tmp_path_factory.mktemp('documents') / 'demo.db'}"
    result = run("demo", "--iterations", "20", "--agents", "2", "--failure-rate", "0.3", "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    return store, payload(result.stdout, "demo")


def test_the_commands_documents_validate_and_share_their_names(demo: tuple[str, dict[str, Any]]) -> None:
    """Each command's document validates; the totals, per-phase tokens, iteration rows and metric totals agree
    between the commands under the same names."""
    store, made = demo
    iid = made["iteration_ids"][0]
    docs = {
        name: payload(result.stdout, name)
        for name, result in {
            "report": run("report", "--store", store, "--json"),
            "status": run("status", "--limit", "100", "--store", store, "--json"),
            "metrics": run("metrics", "--store", store, "--json"),
            "show": run("show", iid, "--store", store, "--json"),
            "history": run("history", iid, "--store", store, "--json"),
            "replay": run("replay", iid, "--version", "2", "--store", store, "--json"),
            "verify": run("verify", "--store", store, "--json"),
            "prices.list": run("prices", "list", "--json"),
            "prices.check": run("prices", "check", "--store", store, "--json"),
            "consumers": run("consumers", "--store", store, "--json"),
        }.items()
    }
    report, status, shown = docs["report"], docs["status"], docs["show"]
    for field in ("iterations", "completed", "failed", "running", "success_rate"):
        assert made["totals"][field] == report["totals"][field], field
    assert made["totals"]["iterations"] == len(status["iterations"]) == 20
    demo_phases = {p["phase"]: p for p in made["phases"]}
    for p in report["phases"]:
        if p["phase"] in demo_phases:
            assert demo_phases[p["phase"]]["tokens"] == p["tokens"], p["phase"]
    totals = {m["metric"]: m["total"] for m in docs["metrics"]["metrics"]}
    for p in report["phases"]:
        assert totals.get(f"{p['phase']}_tokens", 0) == p["tokens"], p["phase"]
    (row,) = [r for r in status["iterations"] if r["iteration_id"] == iid]
    detail = shown["iteration"]
    assert {k: detail[k] for k in row} == row
    assert docs["history"]["iteration_id"] == docs["replay"]["iteration_id"] == iid
    assert [e["version"] for e in docs["replay"]["events"]] == [1, 2]
    assert docs["verify"]["ok"] is True


def test_abandon_prints_its_document(tmp_path: Path) -> None:
    """`abandon ID --json` names the iteration it ended by `iteration_id`, with the time it had not changed since."""
    store = f"sqlite:///{tmp_path / 'abandon.db'}"
    with PerformanceTracker(store=store, migrate=True) as tracker:
        iid = tracker.start_iteration("agent-a", 1)
    result = run("abandon", str(iid), "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    (ended,) = payload(result.stdout, "abandon")["abandoned"]
    assert ended["iteration_id"] == str(iid)
    assert ended["since"].endswith("Z")
