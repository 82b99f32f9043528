"""The pydantic mapper round-trips every event type, and upcasts old shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.persistence import JSONTranscoder

from itertrack.adapters.store.mapper import PydanticMapper
from itertrack.domain import Iteration
from itertrack.domain.model.events import DomainEvent

ID = UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
T = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def mapper() -> PydanticMapper:
    return PydanticMapper(transcoder=JSONTranscoder())


def test_every_iteration_event_round_trips() -> None:
    """Stored and read back, each event equals the original, floats and ints kept apart."""
    iteration = Iteration.start(ID, "agent-é", 3, T)
    iteration.change_phase("failed", "boom", T)
    events = [
        *iteration.collect_events(),
        Iteration.MetricsRecorded(
            originator_id=ID, originator_version=3, timestamp=T, metrics={"a_time_ms": 1.5, "a_tokens": 3}
        ),
        Iteration.RecordSaved(originator_id=ID, originator_version=4, timestamp=T, status="completed"),
    ]
    m = mapper()
    for event in events:
        stored = m.to_stored_event(event)
        assert b"originator_id" not in stored.state
        back = m.to_domain_event(stored)
        assert back == event
        assert type(back) is type(event)
    metrics = m.to_domain_event(m.to_stored_event(events[2]))
    assert isinstance(metrics, Iteration.MetricsRecorded)
    assert isinstance(metrics.metrics["a_tokens"], int)
    assert isinstance(metrics.metrics["a_time_ms"], float)


class Renamed(DomainEvent):
    """A test event whose v1 called `label` `name`."""

    class_version: ClassVar[int] = 2
    label: str

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["label"] = state.pop("name")


def test_old_event_shapes_are_upcast_on_read() -> None:
    """A v1 state is upcast to v2 through the class's upcast method."""
    m = mapper()
    stored = m.to_stored_event(Renamed(originator_id=ID, originator_version=1, timestamp=T, label="x"))
    assert b'"class_version":2' in stored.state
    v1_state = stored.state.replace(b'"label"', b'"name"').replace(b',"class_version":2', b"")
    v1 = type(stored)(stored.originator_id, stored.originator_version, stored.topic, v1_state)
    back = m.to_domain_event(v1)
    assert isinstance(back, Renamed)
    assert back.label == "x"
