"""A commit whose acknowledgement is lost: the network dies right after the COMMIT was sent (issue 11, item 4).

The proxy lets the append's one message (the call of the append function: one transaction) reach PostgreSQL,
discards the reply and cuts the network at that moment; the server commits. Without a spool the call raises
`OutcomeUnknownError` (the change landed although the call failed); a retry with the same `change_id=` is a
no-op, so the stored totals count the change once. With a spool the call returns and the forwarder recognises
the landed rows. A call that failed before anything was sent raises plain `StoreUnavailableError`: it certainly
did not land.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import psycopg
import psycopg_pool
import pytest
from eventsourcing.persistence import OperationalError
from fake_clock import FakeClock
from spool_support import Open, flush, through, versions, without_spool
from support import TcpProxy, wait_for
from switchable_store import SwitchableStore, spooling_tracker

from itertrack.adapters.bootstrap import spooling_writer, store_of
from itertrack.adapters.store.unavailable import CommitOutcomeUnknown
from itertrack.domain import (
    Iteration,
    OutcomeUnknownError,
    PerformanceTracker,
    StoreUnavailableError,
)

# In the append only: the call of the append function is prepared, so the message that runs it (Bind) carries
# no SQL text, only the parameters; every event's topic names the iteration's class, and no read binds one.
INSERT = b"itertrack.domain.model.iteration:Iteration."


def retry_until_answered(call: Callable[[], object]) -> object:
    """What a host does after `OutcomeUnknownError`: retry the keyed call until the store answers."""
    answers: list[object] = []

    def answered() -> bool:
        try:
            answers.append(call())
        except StoreUnavailableError:
            return False
        return True

    wait_for(answered, 30, "the retried call to be answered")
    return answers[-1]


def metrics_recorded(reader: PerformanceTracker, iid: UUID) -> list[dict[str, int | float]]:
    """The amounts of every stored MetricsRecorded event of the iteration (read from the store)."""
    return [e.metrics for e in reader.history(iid) if isinstance(e, Iteration.MetricsRecorded)]


def lose_the_next_acknowledgement(proxy: TcpProxy, call: Callable[[], object]) -> BaseException | None:
    """Run `call` while the proxy loses the reply to its insert; the error it raised (or None).

    A call that failed before its insert was sent (the store unavailable to it for another reason: on a loaded
    machine, a connection that took longer than the 1 s connect timeout) sent nothing, so it is simply made
    again, at most 5 times; a call that succeeded without its insert passing the proxy fails the test.
    """
    error: BaseException | None = None
    for _ in range(5):
        proxy.lose_reply_then_cut(INSERT)
        try:
            call()
        except StoreUnavailableError as e:
            error = e
        else:
            error = None
        if proxy.tripped.is_set() or error is None:
            break
    assert proxy.tripped.is_set(), f"the insert never went through the proxy (the call raised {error!r})"
    return error


@pytest.mark.postgres
def test_without_a_spool_a_lost_acknowledgement_is_an_outcome_unknown_error_and_the_change_landed(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """The call raises `OutcomeUnknownError` (saying how to retry safely), yet the change is stored: a plain
    retry would add it twice."""
    host = open_tracker(without_spool(through(pg_store, proxy)), migrate=True)
    reader = open_tracker(without_spool(pg_store), migrate=False)
    iid = host.start_iteration("agent-1", 1)
    error = lose_the_next_acknowledgement(proxy, lambda: host.update_metrics(iid, {"analysis_tokens": 5}))
    assert isinstance(error, OutcomeUnknownError)
    assert "outcome unknown" in str(error)
    assert "change_id=" in str(error)
    wait_for(lambda: versions(reader, iid) == [1, 2], 30, "the change whose reply was lost to be stored")
    assert metrics_recorded(reader, iid) == [{"analysis_tokens": 5}]


def keyed_update_metrics(host: PerformanceTracker, iid: UUID) -> object:
    host.update_metrics(iid, {"analysis_tokens": 5}, change_id="call-7")
    return None


def keyed_record_usage(host: PerformanceTracker, iid: UUID) -> object:
    usage = {"input_tokens": 3, "output_tokens": 2}
    return host.record_usage(iid, "analysis", usage, change_id="usage-1")


def keyed_update_phase(host: PerformanceTracker, iid: UUID) -> object:
    host.update_phase(iid, "analysis", change_id="phase-analysis")
    return None


def keyed_save(host: PerformanceTracker, iid: UUID) -> object:
    record = {"id": iid, "agent_id": "agent-1", "iteration_number": 1, "iteration_status": "completed"}
    return host.save_iteration(record, change_id="save-1")


def keyed_start(host: PerformanceTracker, iid: UUID) -> object:
    return host.start_iteration("agent-1", 2, change_id="start-agent-1-2")


def keyed_start_and_save(host: PerformanceTracker, iid: UUID) -> object:
    record = {"agent_id": "agent-1", "iteration_number": 3, "iteration_status": "completed"}
    return host.save_iteration(record, change_id="save-new-3")


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("keyed_call", "events"),
    [
        (keyed_update_metrics, 2),
        (keyed_record_usage, 2),
        (keyed_update_phase, 2),
        (keyed_save, 2),
        (keyed_start, 1),
        (keyed_start_and_save, 2),
    ],
)
def test_without_a_spool_a_keyed_retry_after_a_lost_acknowledgement_is_a_no_op(
    pg_store: str,
    proxy: TcpProxy,
    open_tracker: Open,
    keyed_call: Callable[[PerformanceTracker, UUID], object],
    events: int,
) -> None:
    """The same call with the same change_id, retried until the store answers, returns what the first call
    would have returned and adds nothing: the store holds the change once."""
    host = open_tracker(without_spool(through(pg_store, proxy)), migrate=True)
    reader = open_tracker(without_spool(pg_store), migrate=False)
    iid = host.start_iteration("agent-1", 1)
    error = lose_the_next_acknowledgement(proxy, lambda: keyed_call(host, iid))
    assert isinstance(error, OutcomeUnknownError)
    proxy.start()
    first = retry_until_answered(lambda: keyed_call(host, iid))
    again = keyed_call(host, iid)  # and once more, now that nothing is in doubt
    assert again == first
    touched = first if isinstance(first, UUID) else iid
    stored = reader.history(touched)
    assert [e.originator_version for e in stored] == list(range(1, len(stored) + 1))
    ids = [e.event_id for e in stored]
    assert len(ids) == len(set(ids))
    assert len(stored) == events  # the iteration's start (if not this call) and the change, once


@pytest.mark.postgres
def test_with_a_spool_a_lost_acknowledgement_is_forwarded_and_recognised_as_stored(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """With the spool on, the call returns (the change waits in the spool); once the store answers the
    forwarder meets the landed rows, recognises them as its own, and the change is stored once."""
    host = open_tracker(through(pg_store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "n"})
    reader = open_tracker(without_spool(pg_store), migrate=False)
    iid = host.start_iteration("agent-1", 1)
    assert lose_the_next_acknowledgement(proxy, lambda: host.update_metrics(iid, {"analysis_tokens": 5})) is None
    assert spooling_writer(host).spool.count() == 1
    wait_for(lambda: versions(reader, iid) == [1, 2], 30, "the change whose reply was lost to be stored")
    proxy.start()
    flushed = flush(host)
    assert (flushed.forwarded, flushed.already_stored, flushed.stuck) == (0, 1, 0)
    assert metrics_recorded(reader, iid) == [{"analysis_tokens": 5}]


@pytest.mark.postgres
def test_a_call_that_failed_before_sending_is_a_plain_store_unavailable_error(
    pg_store: str, proxy: TcpProxy, open_tracker: Open
) -> None:
    """The network went away while the connections were idle: nothing was sent, so the error says the store
    is unavailable (not that the outcome is unknown), and nothing was stored."""
    host = open_tracker(without_spool(through(pg_store, proxy)), migrate=True)
    reader = open_tracker(without_spool(pg_store), migrate=False)
    iid = host.start_iteration("agent-1", 1)
    proxy.cut()
    for _ in range(2):  # the pooled connection the cut closed, then no connection at all
        with pytest.raises(StoreUnavailableError) as raised:
            host.update_metrics(iid, {"analysis_tokens": 5})
        assert not isinstance(raised.value, OutcomeUnknownError)
    assert versions(reader, iid) == [1]


@pytest.mark.parametrize("cached", [True, False], ids=["as-events", "as-changes"])
def test_a_keyed_change_retried_while_it_waits_in_the_spool_lands_once(tmp_path: Path, cached: bool) -> None:
    """Store away: a keyed change and its retry. With the iteration cached here the retry meets the change in
    the cached copy (one change spooled); without, both wait as changes and the forwarder applies the first
    and recognises the second by its event id. Either way the store holds the change once."""
    store = SwitchableStore()
    host = spooling_tracker(store, tmp_path / "spool.db", FakeClock())
    try:
        other = spooling_tracker(store, tmp_path / "other.db", FakeClock(seed=2))
        iid = other.start_iteration("agent-1", 1)
        other.close()
        if cached:
            host.get_iteration(iid)
        store.recorder.up = False
        for _ in range(2):
            host.update_metrics(iid, {"analysis_tokens": 5}, change_id="call-7")
        assert spooling_writer(host).spool.count() == (1 if cached else 2)
        store.recorder.up = True
        flushed = spooling_writer(host).flush()
        assert (flushed.forwarded, flushed.already_stored, flushed.stuck) == ((1, 0, 0) if cached else (1, 1, 0))
        assert [e.originator_version for e in host.history(iid)] == [1, 2]
        assert host.get_iteration(iid).metrics == {"analysis_tokens": 5}
    finally:
        host.close()


@pytest.mark.postgres
def test_a_retry_that_cannot_connect_after_an_unknown_outcome_keeps_it_unknown(
    pg_store: str, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An insert whose connection died after it was sent is retried once on a fresh connection; when that retry
    cannot even get a connection (a loaded machine, the server still away), the call raises OutcomeUnknownError,
    since the first attempt may have landed, not a StoreUnavailableError that reads as "not written"."""
    host = open_tracker(without_spool(pg_store), migrate=True)
    iid = host.start_iteration("agent-1", 1)
    recorder = store_of(host).app.recorder
    attempts: list[int] = []

    def insert_events(*_args: object, **_kwargs: object) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:  # as the recorder raises it when the connection died after sending
            lost = "consuming input failed: server closed the connection unexpectedly"
            raise CommitOutcomeUnknown(lost) from psycopg.OperationalError(lost)
        waited = "couldn't get a connection after 2.00 sec"  # as the library raises the pool's timeout
        raise OperationalError(waited) from psycopg_pool.PoolTimeout(waited)

    monkeypatch.setattr(recorder, "insert_events", insert_events)
    with pytest.raises(OutcomeUnknownError):
        host.update_metrics(iid, {"analysis_tokens": 5})
    assert attempts == [1, 2]
