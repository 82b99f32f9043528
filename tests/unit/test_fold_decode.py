"""The views' quick decoding of stored events (`FoldMapper`) folds to exactly what the events themselves fold to,
and hands every shape it does not know exactly to the store's mapper."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.decode import FoldMapper, fold_fact
from itertrack.domain import Iteration, PerformanceTracker
from itertrack.projections.fold import LoadedState, MetricsRecordedFact, PhaseChangedFact, StartedFact, fold

ID = UUID("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa")
PHASE = "itertrack.domain.model.iteration:Iteration.PhaseChanged"
METRICS = "itertrack.domain.model.iteration:Iteration.MetricsRecorded"


def stored(topic: str, state: bytes, version: int = 2) -> StoredEvent:
    return StoredEvent(originator_id=ID, originator_version=version, topic=topic, state=state)


def test_every_kind_of_event_folds_the_same_from_facts_and_from_events() -> None:
    """Facts for the three common kinds, events for the others (LLM calls, saved records): same rows."""
    with PerformanceTracker(store="memory://") as tracker:
        for n in range(3):
            iid = tracker.start_iteration(f"agent-{n % 2}", n)
            tracker.update_phase(iid, "scan_generation")
            tracker.update_metrics(iid, {"scan_generation_tokens": 2**62 + n, "scan_generation_time_ms": 1.25})
            tracker.record_llm_call(
                iid, "scan_generation", model="claude-haiku-4-5", usage={"input_tokens": 30, "output_tokens": 12}
            )
            tracker.record_llm_call(iid, "scan_generation", model=None, usage=None)  # usage unknown
            tracker.update_phase(iid, "failed", error="boom") if n else tracker.update_phase(iid, "completed")
        store = store_of(tracker)
        notifications = store.recorder.select_notifications(start=0, limit=1000)
        events: list[Any] = [store.mapper.to_domain_event(n) for n in notifications]
        quick = FoldMapper(store.mapper)
        decoded = [quick.to_domain_event(n) for n in notifications]
    kinds = {type(d) for d in decoded}
    assert {StartedFact, PhaseChangedFact, MetricsRecordedFact, Iteration.LLMCallRecorded} <= kinds
    by_events, by_facts = fold(events, LoadedState()), fold(decoded, LoadedState())
    assert by_facts.current == by_events.current
    assert by_facts.metrics == by_events.metrics
    assert {k: type(v) for k, v in by_facts.metrics.items()} == {k: type(v) for k, v in by_events.metrics.items()}
    assert by_facts.agent_deltas == by_events.agent_deltas
    assert by_facts.durations == by_events.durations
    assert by_facts.llm_calls == by_events.llm_calls


@pytest.mark.parametrize(
    ("topic", "state"),
    [
        (PHASE, b'{"timestamp":"2026-11-30T07:46:38.564997Z","phase":"analysis","error":null,"extra":1}'),
        (PHASE, b'{"timestamp":"2026-11-30T07:46:38.564997","phase":"analysis","error":null}'),  # naive time
        (PHASE, b'{"timestamp":"2026-13-30T07:46:38Z","phase":"analysis"}'),  # no such month
        (PHASE, b'{"timestamp":"2026-11-30T07:46:38Z","phase":7}'),
        (PHASE, b'{"timestamp":"2026-11-30T07:46:38Z","phase":"analysis","class_version":2}'),
        (METRICS, b'{"timestamp":"2026-11-30T07:46:38Z","metrics":{"sharpe":true}}'),
        (METRICS, b'{"timestamp":"2026-11-30T07:46:38Z","metrics":{"sharpe":"1.5"}}'),
        (METRICS, b'{"timestamp":"2026-11-30T07:46:38Z","metrics":{"sharpe":NaN}}'),
        (METRICS, b'{"timestamp":"2026-11-30T07:46:38Z"}'),
        (METRICS, b"not json"),
    ],
)
def test_shapes_it_does_not_know_exactly_go_to_the_mapper(topic: str, state: bytes) -> None:
    """No facts for them: the store's mapper decodes them, or refuses them, as it would without facts."""
    event = stored(topic, state)
    assert fold_fact(event) is None
    with PerformanceTracker(store="memory://") as tracker:
        mapper = store_of(tracker).mapper
        try:
            expected: Any = mapper.to_domain_event(event)
        except MapperDeserialisationError:
            with pytest.raises(MapperDeserialisationError):
                FoldMapper(mapper).to_domain_event(event)
        else:
            decoded = FoldMapper(mapper).to_domain_event(event)
            assert type(decoded) is type(expected)  # an event without its id gets a new one each time it is read
            assert repr(decoded.model_dump(exclude={"event_id"})) == repr(expected.model_dump(exclude={"event_id"}))


def test_facts_carry_what_the_event_says() -> None:
    """An old event without `event_id` or `error` still reads; values keep their JSON types."""
    fact = fold_fact(stored(PHASE, b'{"timestamp":"2026-11-30T07:46:38.5+02:00","phase":"analysis"}', 5))
    assert isinstance(fact, PhaseChangedFact)
    assert (fact.originator_id, fact.originator_version, fact.phase, fact.error) == (ID, 5, "analysis", None)
    assert fact.timestamp.isoformat() == "2026-11-30T07:46:38.500000+02:00"
    fact = fold_fact(stored(METRICS, b'{"timestamp":"2026-11-30T07:46:38Z","metrics":{"a":1,"b":1.0}}'))
    assert isinstance(fact, MetricsRecordedFact)
    assert [type(v) for v in fact.metrics.values()] == [int, float]
