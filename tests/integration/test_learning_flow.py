"""The learning-iteration flow end to end on real stores, with hand-counted fakes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import psycopg
import pytest
from eventsourcing.sqlite import SQLiteApplicationRecorder
from fake_clock import FakeClock
from psycopg import sql
from pydantic import JsonValue

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.store.postgres import PostgresRecorder
from itertrack.adapters.store.url import parse_store_url
from itertrack.domain import Iteration, LLMUsage, PerformanceTracker, Status
from itertrack.domain.service.learning_flow import LearningIterationService
from itertrack.domain.service.ports import Backtester, LLMResponse, Scanner, ScanOutcome, StrategyLLM

Open = Callable[..., PerformanceTracker]

# Hand-chosen usage per call, and milliseconds each call takes on the test clock.
SCAN_USAGE = LLMUsage(input_tokens=100, output_tokens=50, cache_creation_input_tokens=10, cache_read_input_tokens=5)
REGEN_USAGE = LLMUsage(input_tokens=200, output_tokens=100)
ANALYZE_USAGE = LLMUsage(input_tokens=300, output_tokens=40, cache_read_input_tokens=20)
REFINE_USAGE = LLMUsage(input_tokens=70, output_tokens=30)


class CountedLLM(StrategyLLM):
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def generate_scan_strategy(self, agent_id: str, iteration_number: int, manual_guidance: str | None) -> LLMResponse:
        self.clock.advance(1000)
        return LLMResponse(content={"name": "momentum"}, usage=SCAN_USAGE)

    def regenerate_execution(self, strategy: JsonValue, scan: ScanOutcome) -> LLMResponse:
        self.clock.advance(3000)
        return LLMResponse(content="def run(): ...", usage=REGEN_USAGE)

    def analyze_results(self, strategy: JsonValue, backtest_results: JsonValue) -> LLMResponse:
        self.clock.advance(500)
        return LLMResponse(content={"summary": "fine"}, usage=ANALYZE_USAGE)

    def propose_refinements(self, strategy: JsonValue, analysis: JsonValue) -> LLMResponse:
        self.clock.advance(250)
        return LLMResponse(content=[{"threshold": 0.1}], usage=REFINE_USAGE)


class CountedScanner(Scanner):
    def __init__(self, clock: FakeClock, regenerate: bool) -> None:
        self.clock = clock
        self.regenerate = regenerate

    def run_scan(self, strategy: JsonValue) -> ScanOutcome:
        self.clock.advance(2000)
        return ScanOutcome(signals=[{"ticker": "AAPL"}], needs_execution_regeneration=self.regenerate)


class CountedBacktester(Backtester):
    def __init__(self, clock: FakeClock, error: Exception | None = None) -> None:
        self.clock = clock
        self.error = error

    def run_backtests(self, strategy: JsonValue, scan: ScanOutcome) -> JsonValue:
        self.clock.advance(4000)
        if self.error is not None:
            raise self.error
        return {"sharpe": 1.1}


def service(tracker: PerformanceTracker, clock: FakeClock, *, regenerate: bool = True, error: Exception | None = None):  # type: ignore[no-untyped-def]
    return LearningIterationService(
        tracker, CountedLLM(clock), CountedScanner(clock, regenerate), CountedBacktester(clock, error)
    )


def test_successful_iteration_tracks_the_seed_metrics(durable_store: str, open_tracker: Open) -> None:
    """Every seed metric is present with the hand-computed sum; the record is saved; the iteration completed."""
    clock = FakeClock()
    tracker = open_tracker(durable_store, clock=clock)
    outcome = service(tracker, clock).run_iteration("agent-1", 7, manual_guidance="prefer large caps")
    state = tracker.get_iteration(outcome.iteration_id)
    assert state.status is Status.COMPLETED
    assert [p.phase for p in state.phase_history] == [
        "initializing",
        "scan_generation",
        "scan_execution",
        "execution_generation",
        "backtest_execution",
        "analysis",
        "completed",
    ]
    m = state.metrics
    assert m["scan_generation_time_ms"] == 1000
    assert m["scan_execution_time_ms"] == 2000
    assert m["execution_generation_time_ms"] == 3000
    assert m["backtest_execution_time_ms"] == 4000
    assert m["analysis_time_ms"] == 750
    assert m["scan_generation_tokens"] == 100 + 50 + 10 + 5
    assert m["execution_generation_tokens"] == 200 + 100
    assert m["analysis_tokens"] == (300 + 40 + 20) + (70 + 30)
    assert m["analysis_input_tokens"] == 370
    record = tracker.get_record(outcome.iteration_id)
    assert record is not None
    assert (record.agent_id, record.iteration_number, record.manual_guidance) == ("agent-1", 7, "prefer large caps")
    assert record.backtest_results == {"sharpe": 1.1}
    assert record.refinements == [{"threshold": 0.1}]
    kinds = [type(e).__name__ for e in tracker.history(outcome.iteration_id)]
    assert kinds[-2:] == ["RecordSaved", "PhaseChanged"]


class GatewayLLM(CountedLLM):
    """Names its model and response ids; its analysis answer comes without usage (as some gateways send)."""

    def generate_scan_strategy(self, agent_id: str, iteration_number: int, manual_guidance: str | None) -> LLMResponse:
        response = super().generate_scan_strategy(agent_id, iteration_number, manual_guidance)
        return response.model_copy(update={"model": "claude-opus-4-1", "request_id": "msg_1", "duration_ms": 1000.0})

    def analyze_results(self, strategy: JsonValue, backtest_results: JsonValue) -> LLMResponse:
        return super().analyze_results(strategy, backtest_results).model_copy(update={"usage": None})


def test_each_llm_call_is_recorded_with_its_model_and_one_without_usage_does_not_fail_it(
    durable_store: str, open_tracker: Open
) -> None:
    """Four call events with the responses' model, id and duration; a response without usage is counted as
    unknown and the iteration completes, its tokens those of the other calls."""
    clock = FakeClock()
    tracker = open_tracker(durable_store, clock=clock)
    flow = LearningIterationService(
        tracker, GatewayLLM(clock), CountedScanner(clock, regenerate=True), CountedBacktester(clock)
    )
    outcome = flow.run_iteration("agent-1", 7)
    state = tracker.get_iteration(outcome.iteration_id)
    assert state.status is Status.COMPLETED
    assert state.metrics["analysis_tokens"] == 70 + 30
    calls = [e for e in tracker.history(outcome.iteration_id) if isinstance(e, Iteration.LLMCallRecorded)]
    assert [(c.phase, c.model, c.request_id, c.duration_ms, c.usage_unknown) for c in calls] == [
        ("scan_generation", "claude-opus-4-1", "msg_1", 1000.0, False),
        ("execution_generation", None, None, None, False),
        ("analysis", None, None, None, True),
        ("analysis", None, None, None, False),
    ]


def test_without_regeneration_there_is_no_execution_generation(durable_store: str, open_tracker: Open) -> None:
    """Step 2.5 is skipped when the scan does not ask for it, and leaves no metric."""
    clock = FakeClock()
    tracker = open_tracker(durable_store, clock=clock)
    outcome = service(tracker, clock, regenerate=False).run_iteration("agent-1", 1)
    state = tracker.get_iteration(outcome.iteration_id)
    assert "execution_generation" not in [p.phase for p in state.phase_history]
    assert not any(name.startswith("execution_generation") for name in state.metrics)


def test_failing_backtest_marks_the_iteration_failed(durable_store: str, open_tracker: Open) -> None:
    """An exception in the backtester marks the iteration failed with its message and is re-raised; no record."""
    clock = FakeClock()
    tracker = open_tracker(durable_store, clock=clock)
    flow = service(tracker, clock, error=TimeoutError("backtester timeout after 120 s"))
    chosen = clock.new_id()
    with pytest.raises(TimeoutError):
        flow.run_iteration("agent-2", 3, iteration_id=chosen)
    state = tracker.get_iteration(chosen)
    assert (state.phase, state.error) == ("failed", "backtester timeout after 120 s")
    assert state.metrics["backtest_execution_time_ms"] == 4000
    assert "analysis_tokens" not in state.metrics
    assert tracker.get_record(chosen) is None


def _count_record_rows(store: str) -> int:
    url = parse_store_url(store)
    if url.scheme == "sqlite":
        with sqlite3.connect(url.path) as conn:
            return int(conn.execute("SELECT count(*) FROM agent_iterations").fetchone()[0])
    base = store.split("?", maxsplit=1)[0]
    with psycopg.connect(base) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{url.schema_name}".agent_iterations').fetchone()  # noqa: S608  # schema validated by parse_store_url
        assert row is not None
        return int(row[0])


def fail_events_after_the_record(tracker: PerformanceTracker) -> None:
    """A trigger on the tracker's PostgreSQL events table divides by zero when the iteration's record exists."""
    recorder = store_of(tracker).recorder
    assert isinstance(recorder, PostgresRecorder)
    schema = recorder.datastore.schema
    with recorder.datastore.get_connection() as conn:
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {schema}.fail_after_record() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF EXISTS (SELECT 1 FROM {schema}.agent_iterations WHERE id = NEW.originator_id) THEN "
                "PERFORM 1 / 0; END IF; RETURN NEW; END $$"
            ).format(schema=sql.Identifier(schema))
        )
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER fail_after_record BEFORE INSERT ON {events} "
                "FOR EACH ROW EXECUTE FUNCTION {schema}.fail_after_record()"
            ).format(events=sql.Identifier(schema, recorder.events_table_name), schema=sql.Identifier(schema))
        )


def test_failure_inside_the_saving_transaction_leaves_neither_row_nor_event(
    durable_store: str, open_tracker: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the events insert fails after the record insert, both roll back and the iteration is marked failed."""

    def fail_when_saving(original: Callable[..., object]) -> Callable[..., object]:
        def insert(self: object, *args: object, **kwargs: object) -> object:
            if kwargs.get("iteration_record") is not None:
                raise RuntimeError("disk full while saving")
            return original(self, *args, **kwargs)

        return insert

    # The parent's insert of the events runs after our recorder has inserted the record row.
    monkeypatch.setattr(
        SQLiteApplicationRecorder,
        "_insert_events",
        fail_when_saving(SQLiteApplicationRecorder._insert_events),  # noqa: SLF001  # fault injection after the record row
    )
    is_pg = durable_store.startswith("postgresql")
    clock = FakeClock()
    tracker = open_tracker(durable_store, clock=clock)
    if is_pg:
        # On PostgreSQL the append is one server-side function: the events insert fails inside it, after its
        # record insert, for the events of an iteration whose record that transaction holds.
        fail_events_after_the_record(tracker)
    chosen = clock.new_id()
    with pytest.raises(Exception, match="division by zero" if is_pg else "disk full"):
        service(tracker, clock).run_iteration("agent-1", 1, iteration_id=chosen)
    assert _count_record_rows(durable_store) == 0
    assert tracker.get_record(chosen) is None
    history = tracker.history(chosen)
    assert not any(isinstance(e, Iteration.RecordSaved) for e in history)
    state = tracker.get_iteration(chosen)
    assert (state.status, state.saved) == (Status.FAILED, False)
    assert state.error == ("division by zero" if is_pg else "disk full while saving")


def test_record_and_tracked_history_join_on_one_id(durable_store: str, open_tracker: Open) -> None:
    """In SQL, the agent_iterations row joins its iteration's events on the id column."""
    clock = FakeClock()
    tracker = open_tracker(durable_store, clock=clock)
    flow = service(tracker, clock)
    ids = [flow.run_iteration("agent-1", n).iteration_id for n in (1, 2)]
    url = parse_store_url(durable_store)
    query = (
        "SELECT r.iteration_number, count(*) FROM agent_iterations r "
        "JOIN {events} e ON e.originator_id = r.id GROUP BY r.iteration_number ORDER BY 1"
    )
    if url.scheme == "sqlite":
        with sqlite3.connect(url.path) as conn:
            rows = conn.execute(query.format(events="stored_events")).fetchall()
    else:
        with psycopg.connect(durable_store.split("?", maxsplit=1)[0]) as conn:
            conn.execute(f'SET search_path TO "{url.schema_name}"')
            rows = conn.execute(query.format(events="performancetracker_events")).fetchall()
    per_iteration = [len(tracker.history(i)) for i in ids]
    assert [tuple(r) for r in rows] == [(1, per_iteration[0]), (2, per_iteration[1])]
