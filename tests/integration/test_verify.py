"""`verify` passes on a clean store and names every planted fault."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from documents_support import payload
from support import all_events, raw_sql

from itertrack.adapters.demo.fakes import Scenario, SimulatedClock
from itertrack.adapters.demo.run import run_demo
from itertrack.adapters.views.keeper import ReadModels
from itertrack.adapters.views.verify import verify_iteration, verify_store
from itertrack.domain import PerformanceTracker, Status
from itertrack.projections.verification import VerifyReport

Open = Callable[..., PerformanceTracker]


@pytest.fixture
def demo(durable_store: str, open_tracker: Open) -> tuple[str, PerformanceTracker, list[uuid.UUID], list[uuid.UUID]]:
    """A store with 12 demo iterations (some failed) and read models caught up."""
    clock = SimulatedClock(start=datetime(2026, 2, 1, tzinfo=UTC), new_id=uuid.uuid4)
    tracker = open_tracker(durable_store, clock=clock)
    run = run_demo(tracker, Scenario(clock, seed=5, failure_rate=0.3), iterations=12, agents=3)
    ReadModels(tracker, background=False).sync()
    return durable_store, tracker, list(run.iteration_ids), list(run.failed_ids)


def details(report: VerifyReport) -> list[str]:
    return [f"{p.check} {p.iteration_id}: {p.detail}" for p in report.problems]


def db_id(store: str, iid: uuid.UUID) -> Any:
    return iid.hex if store.startswith("sqlite") else iid


def test_a_clean_store_verifies(demo: tuple[str, PerformanceTracker, list[uuid.UUID], list[uuid.UUID]]) -> None:
    """No problem on a store written only through the tracker; every part was checked."""
    _, tracker, ids, failed = demo
    report = verify_store(tracker)
    assert details(report) == []
    assert report.ok
    assert report.iterations == 12
    assert report.records == 12 - len(failed)
    assert report.events == len(all_events(tracker))
    assert report.read_model_rows > 12
    assert verify_iteration(tracker, ids[0]).ok


@pytest.mark.parametrize("require_records", [False, True])
def test_deleted_record_is_named(
    demo: tuple[str, PerformanceTracker, list[uuid.UUID], list[uuid.UUID]], require_records: bool
) -> None:
    """A deleted agent_iterations row is reported against its iteration, whatever the host's policy."""
    store, tracker, ids, failed = demo
    victim = next(i for i in ids if i not in failed)
    with raw_sql(store) as run:
        run("DELETE FROM agent_iterations WHERE id = %s", (db_id(store, victim),))
    report = verify_store(tracker, require_records=require_records)
    assert details(report) == [f"records {victim}: was saved but its record is missing"]
    assert not verify_iteration(tracker, victim, require_records=require_records).ok


@pytest.mark.parametrize("require_records", [False, True])
def test_record_without_iteration_is_named(
    demo: tuple[str, PerformanceTracker, list[uuid.UUID], list[uuid.UUID]], require_records: bool
) -> None:
    """A record inserted behind the tracker's back, with no iteration, is reported by its id, whatever the policy."""
    store, tracker, _, _ = demo
    stray = uuid.uuid4()
    with raw_sql(store) as run:
        run(
            "INSERT INTO agent_iterations (id, agent_id, iteration_number, iteration_status, created_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            (db_id(store, stray), "agent-x", 1, "completed", datetime(2026, 2, 1, tzinfo=UTC).isoformat()),
        )
    assert details(verify_store(tracker, require_records=require_records)) == [
        f"records {stray}: record has no iteration"
    ]


def completed_without_saving(tracker: PerformanceTracker) -> uuid.UUID:
    """An iteration taken to `completed` by a host that does not use the saving step."""
    iid = tracker.start_iteration("agent-no-records", 1)
    for phase in ("analysis", "completed"):
        tracker.update_phase(iid, phase)
    ReadModels(tracker, background=False).sync()
    return iid


def test_completed_without_a_record_is_host_policy(
    demo: tuple[str, PerformanceTracker, list[uuid.UUID], list[uuid.UUID]],
) -> None:
    """Without the saving step a completed iteration verifies OK; with `require_records` it is named."""
    _, tracker, _, _ = demo
    iid = completed_without_saving(tracker)
    default = verify_store(tracker)
    assert details(default) == []
    assert default.ok
    assert not default.require_records
    assert verify_iteration(tracker, iid).ok
    required = verify_store(tracker, require_records=True)
    assert details(required) == [f"records {iid}: completed without a record"]
    assert required.require_records
    assert details(verify_iteration(tracker, iid, require_records=True)) == [
        f"records {iid}: completed without a record"
    ]


def test_verify_command_applies_require_records_only_when_asked(
    demo: tuple[str, PerformanceTracker, list[uuid.UUID], list[uuid.UUID]],
) -> None:
    """`verify` exits 0 for a host without the saving step, 1 with --require-records; its JSON names the policy."""
    store, tracker, _, _ = demo
    iid = completed_without_saving(tracker)
    command = [str(Path(sys.executable).with_name("itertrack")), "verify", "--store", store, "--json"]
    default = subprocess.run(command, capture_output=True, text=True, check=False)
    assert default.returncode == 0, default.stdout + default.stderr
    assert payload(default.stdout, "verify")["require_records"] is False
    assert payload(default.stdout, "verify")["problems"] == []
    required = subprocess.run([*command, "--require-records"], capture_output=True, text=True, check=False)
    assert required.returncode == 1, required.stdout + required.stderr
    report = payload(required.stdout, "verify")
    assert report["require_records"] is True
    assert report["problems"] == [
        {"check": "records", "iteration_id": str(iid), "detail": "completed without a record"}
    ]
    text = subprocess.run([*command[:-1], "--require-records"], capture_output=True, text=True, check=False)
    assert text.returncode == 1
    assert f"PROBLEM records {iid}: completed without a record" in text.stdout


def test_tampered_read_model_rows_are_named(
    demo: tuple[str, PerformanceTracker, list[uuid.UUID], list[uuid.UUID]],
) -> None:
    """A hand-edited metric total and phase are reported with the row's key and both values."""
    store, tracker, ids, failed = demo
    victim = next(i for i in ids if i not in failed)
    true_total = tracker.get_iteration(victim).metrics["analysis_tokens"]
    with raw_sql(store) as run:
        run(
            "UPDATE iteration_metrics SET total = total + 1 WHERE iteration_id = %s AND metric = %s",
            (db_id(store, victim), "analysis_tokens"),
        )
        run("UPDATE iteration_current SET phase = %s WHERE id = %s", ("analysis", db_id(store, victim)))
    found = details(verify_store(tracker))
    assert (
        f"read_models {victim}: iteration_current.phase: the view has 'analysis', the events give 'completed'" in found
    )
    assert (
        f"read_models {victim}: iteration_metrics row ({victim!r}, 'analysis_tokens'): "
        f"the view has {true_total + 1!r}, the events give {true_total!r}" in found
    )
    # The metric no longer equals the sum of the iteration's recorded LLM calls in that phase either.
    assert (
        f"token_totals {victim}: analysis_tokens is {true_total + 1!r} in iteration_metrics, "
        f"but its LLM calls sum to {true_total!r}" in found
    )
    assert len(found) == 3
    assert not verify_iteration(tracker, victim).ok


def test_token_metrics_that_are_not_the_sum_of_the_calls_are_named(
    demo: tuple[str, PerformanceTracker, list[uuid.UUID], list[uuid.UUID]],
) -> None:
    """A call's row lost from llm_calls: the row is missing, and the phase's token metrics no longer equal its calls."""
    store, tracker, ids, _ = demo
    victim = ids[0]
    with ReadModels(tracker, background=False) as views:
        call = views.llm_calls(victim)[0]
        metrics = {m.metric: m.total for m in views.metrics(victim)}
    with raw_sql(store) as run:
        run("DELETE FROM llm_calls WHERE iteration_id = %s AND version = %s", (db_id(store, victim), call.version))
    phase, total = call.phase, metrics[f"{call.phase}_tokens"]
    found = details(verify_store(tracker))
    assert f"read_models {victim}: llm_calls row ({victim!r}, {call.version}) is missing from the view" in found
    assert (
        f"token_totals {victim}: {phase}_tokens is {total!r} in iteration_metrics, but its LLM calls sum to "
        f"{total - call.total_tokens}" in found
    )
    assert {p.check for p in verify_iteration(tracker, victim).problems} == {"read_models", "token_totals"}


def test_a_deleted_event_is_a_version_gap(
    demo: tuple[str, PerformanceTracker, list[uuid.UUID], list[uuid.UUID]],
) -> None:
    """Deleting an event from the log shows as a version gap in its iteration."""
    store, tracker, ids, _ = demo
    victim = ids[3]
    table = "stored_events" if store.startswith("sqlite") else "performancetracker_events"
    with raw_sql(store) as run:
        run(f"DELETE FROM {table} WHERE originator_id = %s AND originator_version = 3", (db_id(store, victim),))  # noqa: S608  # table name from a fixed pair
    found = details(verify_store(tracker))
    assert f"versions {victim}: version 4 follows 2" in found


def test_a_change_stored_twice_is_named_by_its_event_id(
    demo: tuple[str, PerformanceTracker, list[uuid.UUID], list[uuid.UUID]],
) -> None:
    """The same event again at the next version (a change applied twice) is found by its repeated event id."""
    store, tracker, ids, _ = demo
    victim = ids[5]
    last = tracker.history(victim)[-1]
    table = "stored_events" if store.startswith("sqlite") else "performancetracker_events"
    with raw_sql(store) as run:
        run(
            f"INSERT INTO {table} (originator_id, originator_version, topic, state) "  # noqa: S608  # table name from a fixed pair
            f"SELECT originator_id, originator_version + 1, topic, state FROM {table} "
            "WHERE originator_id = %s AND originator_version = %s",
            (db_id(store, victim), last.originator_version),
        )
    found = details(verify_store(tracker))
    assert found == [
        f"event_ids {victim}: version {last.originator_version + 1} repeats event id {last.event_id} "
        "(a change stored twice)"
    ]


def test_verify_command_exits_nonzero_with_the_list(
    demo: tuple[str, PerformanceTracker, list[uuid.UUID], list[uuid.UUID]],
) -> None:
    """`itertrack verify` exits 0 on a clean store and 1 with each problem on its own line otherwise."""
    store, tracker, ids, failed = demo
    command = [str(Path(sys.executable).with_name("itertrack")), "verify", "--store", store]
    clean = subprocess.run(command, capture_output=True, text=True, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "OK: nothing wrong" in clean.stdout
    victim = next(i for i in ids if i not in failed)
    with raw_sql(store) as run:
        run("DELETE FROM agent_iterations WHERE id = %s", (db_id(store, victim),))
    broken = subprocess.run([*command, "--json"], capture_output=True, text=True, check=False)
    assert broken.returncode == 1
    report = payload(broken.stdout, "verify")
    assert report["ok"] is False
    assert report["problems"] == [
        {"check": "records", "iteration_id": str(victim), "detail": "was saved but its record is missing"}
    ]
    assert tracker.get_iteration(victim).status is Status.COMPLETED
