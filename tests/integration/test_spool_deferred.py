"""Changes of iterations this process never loaded, during a PostgreSQL outage: kept as the changes themselves
and applied on the stored iteration once it answers."""

from __future__ import annotations

import subprocess
import time
from uuid import UUID

import pytest
from documents_support import payload
from fake_clock import FakeClock
from spool_support import (
    ITERTRACK,
    Open,
    flush,
    started_elsewhere,
    through,
    versions,
)
from support import TcpProxy, wait_for

from itertrack.adapters.bootstrap import spooling_writer
from itertrack.domain import (
    Iteration,
    IterationRecord,
    StoreUnavailableError,
)

pytestmark = pytest.mark.postgres


def test_an_iteration_this_process_never_loaded_can_be_changed_during_an_outage(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """Its version is unknown, so the changes themselves wait in the spool and are applied, in order, later."""
    other, iid = started_elsewhere(pg_store, open_tracker)
    host = open_tracker(through(pg_store, proxy), migrate=False)
    proxy.cut()
    started = time.monotonic()
    host.update_metrics(iid, {"scan_generation_tokens": 300})
    host.update_phase(iid, "backtest_execution")
    host.save_iteration(IterationRecord(id=iid, agent_id="agent-1", iteration_number=7, analysis={"ok": True}))
    host.update_phase(iid, "completed")
    assert time.monotonic() - started < 4.0  # one connect timeout (1 s) at most, then the spool answers
    assert spooling_writer(host).spool is not None
    status = spooling_writer(host).spool.status()
    assert [e.deferred for e in status.entries] == [
        "metrics scan_generation_tokens",
        "phase backtest_execution",
        "save record (completed)",
        "phase completed",
    ]
    assert [e.with_record for e in status.entries] == [False, False, True, False]
    with pytest.raises(StoreUnavailableError):
        host.get_iteration(iid)  # nothing to answer from: this process never had the iteration

    proxy.start()
    wait_for(
        lambda: spooling_writer(host).spool.count() == 0,
        30,
        "the spool to drain",
    )
    assert versions(other, iid) == [1, 2, 3, 4, 5, 6]
    state = other.get_iteration(iid)
    assert (state.phase, state.saved, state.metrics) == ("completed", True, {"scan_generation_tokens": 300})
    stamps = [e.timestamp for e in other.history(iid)]
    assert stamps == sorted(stamps)
    record = other.get_record(iid)
    assert record is not None
    assert record.analysis == {"ok": True}
    assert host.get_iteration(iid).spooled_changes == 0


def test_an_llm_call_during_an_outage_waits_as_itself_and_lands_once_with_its_usage(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """A call of an iteration this process never loaded waits in the spool (model, usage and all), then lands as
    one LLMCallRecorded; one without usage too."""
    other, iid = started_elsewhere(pg_store, open_tracker)
    host = open_tracker(through(pg_store, proxy), migrate=False)
    proxy.cut()
    usage = {"input_tokens": 5, "cache_creation": {"ephemeral_1h_input_tokens": 40}, "service_tier": "standard"}
    host.record_llm_call(iid, "analysis", model="claude-opus-4-1", usage=usage, duration_ms=12.5, inference_geo="us")
    host.record_usage(iid, "analysis", None, model="claude-opus-4-1")
    status = spooling_writer(host).spool.status()
    assert [e.deferred for e in status.entries] == ["LLM call in analysis (claude-opus-4-1)"] * 2
    proxy.start()
    wait_for(lambda: spooling_writer(host).spool.count() == 0, 30, "the spool to drain")
    calls = [e for e in other.history(iid) if isinstance(e, Iteration.LLMCallRecorded)]
    assert [(c.model, c.duration_ms, c.inference_geo, c.usage_unknown) for c in calls] == [
        ("claude-opus-4-1", 12.5, "us", False),
        ("claude-opus-4-1", None, None, True),
    ]
    assert calls[0].usage is not None
    assert calls[0].usage.cache_write_1h_tokens == 40
    assert other.get_iteration(iid).metrics["analysis_tokens"] == 45


def test_a_deferred_change_forwarded_just_before_a_crash_is_not_applied_again(
    pg_store: str, proxy: TcpProxy, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forward committed, the process died before forgetting it: the event id recognises it next time."""
    other, iid = started_elsewhere(pg_store, open_tracker)
    host = open_tracker(through(pg_store, proxy), migrate=False, env={"ITERTRACK_FORWARD": "n"})
    proxy.cut()
    host.update_metrics(iid, {"analysis_tokens": 5})
    host.update_metrics(iid, {"analysis_tokens": 7})
    proxy.start()
    assert spooling_writer(host).spool is not None
    spool = spooling_writer(host).spool
    forget = spool.remove

    def die_after_commit(*change_ids: int) -> None:
        raise SystemExit("killed between the commit and forgetting the change")

    monkeypatch.setattr(spool, "remove", die_after_commit)
    with pytest.raises(SystemExit):
        flush(host)
    assert versions(other, iid) == [1, 2, 3, 4]  # both changes were committed (one load, one transaction)
    monkeypatch.setattr(spool, "remove", forget)
    flushed = flush(host)
    assert (flushed.forwarded, flushed.already_stored, flushed.stuck, flushed.waiting) == (0, 2, 0, 0)
    assert versions(other, iid) == [1, 2, 3, 4]
    assert other.get_iteration(iid).metrics == {"analysis_tokens": 12}


def test_a_deferred_change_the_stored_iteration_refuses_is_set_aside_with_its_reason(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """If the iteration finished meanwhile, each deferred change is reported with the reason, never dropped."""
    other, iid = started_elsewhere(pg_store, open_tracker)
    host = open_tracker(through(pg_store, proxy), migrate=False, env={"ITERTRACK_FORWARD": "n"})
    proxy.cut()
    host.update_phase(iid, "analysis")
    host.update_metrics(iid, {"analysis_tokens": 9})
    other.update_phase(iid, "completed")  # another process finished it
    proxy.start()
    flushed = flush(host)
    assert (flushed.forwarded, flushed.set_aside, flushed.stuck, flushed.waiting) == (0, 2, 2, 0)
    assert spooling_writer(host).spool is not None
    status = spooling_writer(host).spool.status()
    assert (status.waiting, status.stuck) == (0, 2)
    for entry in status.entries:
        assert "refused by the stored iteration" in (entry.stuck or "")
        assert "completed" in (entry.stuck or "")
    assert versions(other, iid) == [1, 2, 3]  # nothing appended after the end

    shown = subprocess.run(
        [ITERTRACK, "spool", "status", "--store", pg_store, "--json"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 4, shown.stderr  # a change is stuck: a person is needed
    entries = payload(shown.stdout, "spool.status")["entries"]
    assert [(e["deferred"], e["versions"]) for e in entries] == [
        ("phase analysis", []),
        ("metrics analysis_tokens", []),
    ]


def test_a_deferred_change_waits_for_its_iteration_to_reach_the_store_then_is_reported(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """Another process's spool may still hold the start: wait (not stuck) for a grace period, then report it."""
    clock = FakeClock(step_ms=0)
    host = open_tracker(through(pg_store, proxy), migrate=True, clock=clock, env={"ITERTRACK_FORWARD": "n"})
    proxy.cut()
    unknown = UUID("0d9e8a4c-1b2f-4c3d-9e8f-7a6b5c4d3e2f")
    clock.at(0)
    host.update_phase(unknown, "analysis")
    proxy.start()
    clock.at(60_000)
    flushed = flush(host)
    assert (flushed.forwarded, flushed.stuck, flushed.waiting) == (0, 0, 1)
    clock.at(11 * 60_000)
    flushed = flush(host)
    assert (flushed.forwarded, flushed.stuck, flushed.waiting) == (0, 1, 0)
    assert spooling_writer(host).spool is not None
    assert "is not in the store" in (spooling_writer(host).spool.status().entries[0].stuck or "")
