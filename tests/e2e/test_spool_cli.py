"""`itertrack spool retry|discard`: what a person does with a stuck change, from the command line."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from documents_support import payload

from itertrack.adapters.spool.sqlite_file import SQLiteSpool
from itertrack.domain import IterationRecord
from itertrack.domain.model.changes import DeferredChange, MetricsChange, RecordSave

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
ITERATION = UUID("5b7c2a0e-0000-4000-8000-000000000001")


@pytest.fixture
def stuck_spool(tmp_path: Path) -> tuple[str, Path]:
    """A spool with a stuck saving step (record included) and a waiting change after it.

    The store URL names a port nothing listens on: these commands read and change the spool file only.
    """
    path = tmp_path / "spool.db"
    spool = SQLiteSpool(path)
    try:
        at = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
        save = RecordSave(event_id=uuid4(), agent_id="agent-1", iteration_number=3, status="completed")
        record = IterationRecord(id=ITERATION, agent_id="agent-1", iteration_number=3, analysis={"sharpe": 1.2})
        spool.add_deferred(ITERATION, DeferredChange(at=at, change=save), record)
        spool.add_deferred(
            ITERATION, DeferredChange(at=at, change=MetricsChange(event_id=uuid4(), metrics={"x": 1})), None
        )
        first = spool.waiting(1)[0].id
        spool.mark_stuck(first, "refused by the stored iteration: it is completed")
    finally:
        spool.close()
    return f"postgresql://root@127.0.0.1:1/test?spool={path}", path


def itertrack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ITERTRACK, *args], capture_output=True, text=True, check=False)


def status(store: str) -> dict[str, object]:
    result = payload(itertrack("spool", "status", "--store", store, "--json").stdout, "spool.status")
    assert isinstance(result, dict)
    return result


def test_retry_clears_the_stuck_mark_so_the_next_flush_tries_again(stuck_spool: tuple[str, Path]) -> None:
    store, _ = stuck_spool
    first = status(store)["entries"][0]["change_id"]  # type: ignore[index]
    result = itertrack("spool", "retry", str(first), "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    assert payload(result.stdout, "spool.retry") == {"retried": [first]}
    after = status(store)
    assert (after["waiting"], after["stuck"]) == (2, 0)


def test_discard_drops_a_stuck_change_and_prints_all_it_held(stuck_spool: tuple[str, Path]) -> None:
    """Only the stuck change goes: the change after it was never held up by it and still waits."""
    store, path = stuck_spool
    ids = [str(e["change_id"]) for e in status(store)["entries"]]  # type: ignore[attr-defined]
    result = itertrack("spool", "discard", ids[0], "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    (dropped,) = payload(result.stdout, "spool.discard")["discarded"]
    assert dropped["iteration_id"] == str(ITERATION)
    assert dropped["stuck"] == "refused by the stored iteration: it is completed"
    assert dropped["deferred"]["change"]["kind"] == "save"
    assert dropped["record"]["analysis"] == {"sharpe": 1.2}
    spool = SQLiteSpool(path)
    try:
        assert (spool.count(), spool.stuck_count()) == (1, 0)
        assert [c.deferred.change.kind for c in spool.waiting(10) if c.deferred] == ["metrics"]
    finally:
        spool.close()


@pytest.mark.parametrize(
    ("command", "named", "reason"),
    [
        ("retry", "999", "is not in the spool"),
        ("discard", "999", "is not in the spool"),
        ("retry", "second", "is not stuck: it waits to be forwarded (spool flush)"),
        ("discard", "second", "is not stuck: it waits to be forwarded (spool flush)"),
    ],
)
def test_only_stuck_changes_can_be_retried_or_discarded(
    stuck_spool: tuple[str, Path], command: str, named: str, reason: str
) -> None:
    """Naming a change that waits (or none) is one line naming the id, exit 2 (a bad argument), and nothing changes."""
    store, _ = stuck_spool
    before = status(store)
    ids = [str(e["change_id"]) for e in before["entries"]]  # type: ignore[attr-defined]
    change_id = ids[1] if named == "second" else named
    result = itertrack("spool", command, change_id, "--store", store)
    assert result.returncode == 2
    assert result.stderr.strip() == f"itertrack: error: id={change_id}: {reason}"
    assert status(store) == before


def test_status_exit_codes_tell_a_monitor_empty_waiting_or_needing_a_person(
    stuck_spool: tuple[str, Path], tmp_path: Path
) -> None:
    """0 nothing waits, 3 changes wait (they go by themselves), 4 a change is stuck; 1 stays a typed error."""
    empty = f"postgresql://root@127.0.0.1:1/test?spool={tmp_path / 'empty.db'}"
    assert itertrack("spool", "status", "--store", empty).returncode == 0
    store, path = stuck_spool
    assert itertrack("spool", "status", "--store", store).returncode == 4
    spool = SQLiteSpool(path)
    try:
        assert spool.unstick(spool.waiting(1)[0].id)
    finally:
        spool.close()
    assert itertrack("spool", "status", "--store", store).returncode == 3
    no_spool = itertrack("spool", "status", "--store", "sqlite:///x.db")
    assert no_spool.returncode == 1
    assert "has no spool" in no_spool.stderr
    shown = itertrack("spool", "status", "--help").stdout
    assert "Exit codes: 0 nothing waits; 3 changes wait" in " ".join(shown.split())


def test_a_damaged_spool_is_quarantined_listed_by_status_and_recovered(tmp_path: Path) -> None:
    """`spool status` moves a damaged file aside and lists it (exit 4); `spool recover` adds what it holds."""
    path = tmp_path / "spool.db"
    store = f"postgresql://root@127.0.0.1:1/test?spool={path}"
    path.write_bytes(b"not a database " * 400)
    result = itertrack("spool", "status", "--store", store, "--json")
    assert result.returncode == 4, result.stderr
    shown = payload(result.stdout, "spool.status")
    assert (shown["waiting"], shown["stuck"]) == (0, 0)
    [damaged] = shown["quarantined"]
    assert damaged["readable_rows"] == 0
    assert Path(damaged["path"]).read_bytes() == b"not a database " * 400
    assert damaged["quarantined_at"] is not None
    recovered = itertrack("spool", "recover", damaged["path"], "--store", store)
    assert recovered.returncode == 1
    assert "nothing can be read from" in recovered.stderr

    # A file with rows: what a damaged one still holds (written by a spool of this release).
    readable = tmp_path / "readable.db"
    spool = SQLiteSpool(readable)
    try:
        at = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
        spool.add_deferred(
            ITERATION, DeferredChange(at=at, change=MetricsChange(event_id=uuid4(), metrics={"x": 1})), None
        )
    finally:
        spool.close()
    result = itertrack("spool", "recover", str(readable), "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    assert payload(result.stdout, "spool.recover") == {"read": 1, "added": 1}
    after = status(store)
    assert (after["waiting"], after["stuck"]) == (1, 0)
    assert [e["deferred"] for e in after["entries"]] == ["metrics x"]  # type: ignore[attr-defined]
