"""`itertrack similar` as a user runs it, on a real SQLite file the embeddings consumer has filled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
from documents_support import payload
from embedding_support import Spec, run_iteration
from fake_clock import FakeClock

from itertrack.adapters.cli.app import main
from itertrack.domain import PerformanceTracker

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ITERTRACK, *args], capture_output=True, text=True, timeout=120, check=False)


def test_similar_prints_neighbours_as_json_and_table_and_errors_in_one_line(tmp_path: Path) -> None:
    """JSON lists the nearest first with agent, number, status, similarity and digest; the table shows them;
    an iteration not embedded yet is one line on stderr naming `itertrack consume embeddings`, exit 1."""
    store = f"sqlite:///{tmp_path / 'similar.db'}"
    clock = FakeClock(step_ms=0)
    with PerformanceTracker(store=store, clock=clock, migrate=True) as tracker:
        error = "KeyError: 'close'"
        a = run_iteration(tracker, clock, Spec("m", 1, [("backtest_execution", 9.0)], {}, error))
        b = run_iteration(tracker, clock, Spec("m", 2, [("backtest_execution", 9.1)], {}, error))
        c = run_iteration(tracker, clock, Spec("m", 3, [("analysis", 300.0)], {"analysis": 90000}, "completed"))
    consumed = run("consume", "embeddings", "--store", store)  # the feed's runner, as a user runs it
    assert consumed.returncode == 0, consumed.stderr
    with PerformanceTracker(store=store, clock=clock) as tracker:
        late = run_iteration(tracker, clock, Spec("m", 4, [("analysis", 1.0)], {}, "completed"))

    result = run("similar", str(a), "--limit", "2", "--json", "--store", store)
    assert result.returncode == 0, result.stderr
    answer = payload(result.stdout, "similar")
    assert answer["target"]["iteration_id"] == str(a)
    assert [UUID(n["iteration_id"]) for n in answer["neighbours"]] == [b, c]
    first = answer["neighbours"][0]
    assert (first["agent_id"], first["iteration_number"], first["status"]) == ("m", 2, "failed")
    assert first["similarity"] > answer["neighbours"][1]["similarity"]
    assert first["digest"].startswith("agent m iteration 2 failed in backtest_execution after 9.1 s")

    table = run("similar", str(a), "--store", store)
    assert table.returncode == 0, table.stderr
    assert str(b) in table.stdout
    assert "failed in backtest_execution" in table.stdout

    missing = run("similar", str(late), "--store", store)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.count("\n") == 1
    assert "has no embedding" in missing.stderr
    assert "itertrack consume embeddings" in missing.stderr


def test_without_the_embed_extra_similar_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without numpy or the model (the module cannot be imported), the command is one line naming the extra."""
    monkeypatch.setitem(sys.modules, "itertrack.adapters.feed.similar", None)  # importing it raises ImportError
    with pytest.raises(SystemExit) as exited:
        main(["similar", "12345678-1234-4678-9234-567812345678", "--store", "memory://"])
    assert exited.value.code == 1
    assert capsys.readouterr().err.endswith("pip install 'itertrack[embed]'\n")
