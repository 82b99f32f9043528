"""A quicker decoding of stored events for the views' catch-up: the fold's facts straight from the stored JSON.

The views fold three kinds of event far more often than any other (`Started`, `PhaseChanged`,
`MetricsRecorded`), and need few of their fields. For those, `FoldMapper` reads the stored JSON with the
standard library into the fold's facts (`StartedFact`, ...) instead of validating a whole pydantic event:
about a third of the decoding's cost. It only does so for a stored shape it knows exactly (the fields the
event class writes, of the types it writes them with, no `class_version`, no cipher nor compressor);
anything else (another kind, an older or newer shape, a value pydantic would refuse or convert) goes
through the store's own mapper, so what the fold gets is what it would get from the events themselves.
`verify` folds the events (pydantic) and compares: the two decodings cannot drift apart unseen.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic

from itertrack.domain.model.iteration import Iteration
from itertrack.projections.fold import FoldInput, MetricsRecordedFact, PhaseChangedFact, StartedFact

# A timestamp as pydantic writes one (ISO 8601, seconds, optional fraction, `Z` or an offset).
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)\Z")


def _started(iteration_id: UUID, version: int, moment: datetime, data: dict[str, Any]) -> FoldInput | None:
    agent_id, number = data["agent_id"], data["iteration_number"]
    if type(agent_id) is not str or type(number) is not int or type(data["originator_topic"]) is not str:
        return None
    return StartedFact(iteration_id, version, moment, agent_id, number)


def _phase_changed(iteration_id: UUID, version: int, moment: datetime, data: dict[str, Any]) -> FoldInput | None:
    phase, error = data["phase"], data.get("error")
    if type(phase) is not str or (error is not None and type(error) is not str):
        return None
    return PhaseChangedFact(iteration_id, version, moment, phase, error)


def _metrics_recorded(iteration_id: UUID, version: int, moment: datetime, data: dict[str, Any]) -> FoldInput | None:
    metrics = data["metrics"]
    if type(metrics) is not dict or not all(type(name) is str and _amount(v) for name, v in metrics.items()):
        return None
    return MetricsRecordedFact(iteration_id, version, moment, metrics)


_Reader = Callable[[UUID, int, datetime, dict[str, Any]], FoldInput | None]
# Per topic: the fields its state may hold, those it must hold, and the reader of its facts.
_READERS: dict[str, tuple[frozenset[str], frozenset[str], _Reader]] = {
    get_topic(Iteration.Started): (
        frozenset({"timestamp", "event_id", "originator_topic", "agent_id", "iteration_number"}),
        frozenset({"timestamp", "originator_topic", "agent_id", "iteration_number"}),
        _started,
    ),
    get_topic(Iteration.PhaseChanged): (
        frozenset({"timestamp", "event_id", "phase", "error"}),
        frozenset({"timestamp", "phase"}),
        _phase_changed,
    ),
    get_topic(Iteration.MetricsRecorded): (
        frozenset({"timestamp", "event_id", "metrics"}),
        frozenset({"timestamp", "metrics"}),
        _metrics_recorded,
    ),
}


def fold_fact(stored: StoredEvent) -> FoldInput | None:
    """The fold's facts of one stored event (plain JSON, neither ciphered nor compressed), or None when
    its kind or shape is not one this reads exactly (the caller then decodes it with the store's mapper)."""
    reader = _READERS.get(stored.topic)
    originator_id = stored.originator_id
    if reader is None or not isinstance(originator_id, UUID) or b'"class_version"' in stored.state:
        return None
    try:
        data = json.loads(stored.state)
    except ValueError:
        return None
    allowed, required, read = reader
    if type(data) is not dict or not (data.keys() <= allowed and data.keys() >= required):
        return None
    moment = _timestamp(data["timestamp"])
    if moment is None or type(data.get("event_id", "")) is not str:
        return None
    return read(originator_id, stored.originator_version, moment, data)


def _timestamp(value: Any) -> datetime | None:
    if type(value) is not str or _TIMESTAMP.match(value) is None:
        return None
    try:
        return datetime.fromisoformat(value)  # timezone-aware: the pattern requires `Z` or an offset
    except ValueError:  # a day or hour out of range: pydantic refuses it too (the mapper says so)
        return None


def _amount(value: Any) -> bool:
    """An int (not a bool) or a finite float, as JSON gives them: what the event's `int | float` keeps as is."""
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


class FoldMapper:
    """The store's mapper for everything but decoding the fold's commonest events, which `fold_fact` does.

    Read by the library's subscription (`to_domain_event` only); a store whose events are ciphered or
    compressed is decoded by its own mapper throughout.
    """

    def __init__(self, mapper: Mapper[UUID]) -> None:
        self.mapper = mapper
        self._plain = mapper.cipher is None and mapper.compressor is None

    def to_domain_event(self, stored: StoredEvent) -> Any:
        """The fold's facts of a stored event when `fold_fact` reads it, else the event the mapper decodes."""
        if self._plain:
            fact = fold_fact(stored)
            if fact is not None:
                return fact
        return self.mapper.to_domain_event(stored)

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        """The store's own encoding (the views never write events)."""
        return self.mapper.to_stored_event(domain_event)
