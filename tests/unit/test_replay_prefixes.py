"""The replay cache's prefixes on hand-made events: overlapping reads, gaps, the bisection and the bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from eventsourcing.utils import get_topic

from itertrack.domain.model.iteration import Iteration
from itertrack.domain.service.replay import state_of, version_at
from itertrack.domain.service.replay_cache import Prefix, ReplayCache

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IID = uuid4()


def events(offsets_ms: list[int], iid: UUID = IID) -> list[Iteration.Event]:
    """A Started event then one metrics event per further offset, stamped T0 + offset."""
    made: list[Iteration.Event] = [
        Iteration.Started(
            originator_id=iid,
            originator_version=1,
            timestamp=T0 + timedelta(milliseconds=offsets_ms[0]),
            originator_topic=get_topic(Iteration),
            agent_id="a",
            iteration_number=1,
        )
    ]
    for version, ms in enumerate(offsets_ms[1:], start=2):
        made.append(
            Iteration.MetricsRecorded(
                originator_id=iid,
                originator_version=version,
                timestamp=T0 + timedelta(milliseconds=ms),
                metrics={"analysis_tokens": version},
            )
        )
    return made


def test_overlapping_reads_extend_once_and_a_gap_is_refused() -> None:
    history = events([0, 1, 2, 3, 4, 5])
    prefix = Prefix()
    assert prefix.extend(history[:3])
    assert prefix.extend(history[1:5])  # versions 2..5: 2 and 3 already held
    assert [e.originator_version for e in prefix.events] == [1, 2, 3, 4, 5]
    assert not prefix.extend([history[5].model_copy(update={"originator_version": 7})])  # 6 is missing
    assert prefix.tip == 5
    cache = ReplayCache(100)
    assert cache.extended(IID, None, history[1:]) is None  # does not start at version 1
    assert cache.get(IID) is None


def test_the_bisection_gives_replays_answer_even_when_a_clock_went_back() -> None:
    history = events([0, 10, 10, 5, 20, 15, 30])
    prefix = Prefix()
    prefix.extend(history)
    for ms in range(35):
        at = T0 + timedelta(milliseconds=ms)
        assert prefix.version_at(at) == version_at(history, at)
    assert prefix.version_at(T0 - timedelta(microseconds=1)) == 0


def test_states_are_folds_and_the_bound_evicts_the_least_recently_read() -> None:
    cache = ReplayCache(12)
    first, second = uuid4(), uuid4()
    a = cache.extended(first, None, events([0, 1, 2, 3, 4], first))
    assert a is not None
    b = cache.extended(second, None, events([0, 1, 2], second))
    assert b is not None
    assert cache.entries == 8
    assert cache.state(first, a, 3) == state_of(a.events[:3])
    assert cache.entries == 9
    cache.get(first)  # the most recently read now
    cache.state(first, a, 4)
    cache.state(first, a, 5)
    cache.state(first, a, 2)  # 5 events + 4 states = 9, plus 3 of the other: 12
    assert cache.entries == 12
    cache.state(first, a, 1)  # 13: the other goes
    assert cache.get(second) is None
    assert cache.entries == 10
    assert cache.state(first, a, 5) == state_of(a.events)
