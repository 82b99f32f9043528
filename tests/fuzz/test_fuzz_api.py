"""Fuzzing the tracker's public calls: every input succeeds or raises the typed error, and a refusal writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from itertrack.adapters.bootstrap import store_of
from itertrack.domain import InvalidInputError, IterationError, PerformanceTracker, Phase
from itertrack.domain.model.metrics import METRIC_NAME
from itertrack.domain.model.text import MAX_ERROR_MESSAGE

hostile_text = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        [
            "'; DROP TABLE stored_events; --",
            "\x00",
            "a\x00b",
            "\ud800",
            "\u0430nalysis",  # a Cyrillic confusable of "analysis"
            "analysis\u200b",
            "x" * 5000,
            "",
            " ",
        ]
    ),
)
metric_names = st.one_of(st.from_regex(METRIC_NAME, fullmatch=True).filter(lambda s: len(s) <= 100), hostile_text)
amounts = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
)
metric_updates = st.one_of(
    st.dictionaries(metric_names, amounts, max_size=6),
    st.lists(st.tuples(metric_names, amounts), max_size=3),
    st.none(),
    st.text(max_size=10),
)
phases = st.one_of(st.sampled_from([p.value for p in Phase]), hostile_text, st.integers(), st.none())
errors = st.one_of(st.none(), hostile_text, st.integers())


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def tracker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PerformanceTracker]:
    store = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'f.db'}"
    with PerformanceTracker(store=store) as t:
        yield t


def storable(text: str) -> bool:
    """Text both stores keep: no NUL, encodable as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def appended(tracker: PerformanceTracker) -> int:
    return store_of(tracker).recorder.max_notification_id() or 0


@given(update=metric_updates)
def test_update_metrics_succeeds_or_refuses_cleanly(tracker: PerformanceTracker, update: Any) -> None:
    """A metrics update either adds every amount to its total or raises InvalidInputError and appends nothing."""
    iid = tracker.start_iteration("fuzz", 1)
    before = appended(tracker)
    try:
        tracker.update_metrics(iid, update)
    except InvalidInputError as e:
        assert e.field.startswith("metrics")
        assert appended(tracker) == before
        assert tracker.get_iteration(iid).metrics == {}
    else:
        assert appended(tracker) == before + 1
        assert tracker.get_iteration(iid).metrics == update


@given(phase=phases, error=errors)
def test_update_phase_succeeds_or_refuses_cleanly(tracker: PerformanceTracker, phase: Any, error: Any) -> None:
    """A phase change either lands as one event or raises a typed error and appends nothing."""
    iid = tracker.start_iteration("fuzz", 1)
    before = appended(tracker)
    try:
        tracker.update_phase(iid, phase, error=error)
    except IterationError as e:
        assert isinstance(e, InvalidInputError)
        assert e.field in ("phase", "error")
        assert appended(tracker) == before
        assert tracker.get_iteration(iid).phase == "initializing"
    else:
        assert appended(tracker) == before + 1
        state = tracker.get_iteration(iid)
        assert state.phase == phase
        if isinstance(error, str) and error.strip() and len(error) <= MAX_ERROR_MESSAGE and storable(error):
            assert state.error == error
        elif error is not None:  # stored cut, escaped or as a placeholder: the failure is recorded all the same
            assert state.error is not None
            assert state.error.strip()
            assert len(state.error) <= MAX_ERROR_MESSAGE
            assert storable(state.error)


@given(
    agent_id=st.one_of(hostile_text, st.integers()), number=st.one_of(st.integers(), st.booleans(), st.text(max_size=3))
)
def test_start_iteration_succeeds_or_refuses_cleanly(tracker: PerformanceTracker, agent_id: Any, number: Any) -> None:
    """Starting either stores the agent id verbatim or raises InvalidInputError and appends nothing."""
    before = appended(tracker)
    try:
        iid = tracker.start_iteration(agent_id, number)
    except InvalidInputError as e:
        assert e.field in ("agent_id", "iteration_number")
        assert appended(tracker) == before
    else:
        state = tracker.get_iteration(iid)
        assert (state.agent_id, state.iteration_number) == (agent_id, number)


def test_fuzzed_stores_still_read_back(tmp_path: Path) -> None:
    """Hostile but valid text (SQL metacharacters, confusables) round-trips through a real file verbatim."""
    store = f"sqlite:///{tmp_path / 'h.db'}"
    hostile = "x'); DROP TABLE stored_events; -- аgent"
    with PerformanceTracker(store=store) as t:
        iid = t.start_iteration(hostile, 1)
        t.update_phase(iid, "failed", error=hostile + "\n\tmore")
    with PerformanceTracker(store=store) as again:
        state = again.get_iteration(iid)
        assert (state.agent_id, state.error) == (hostile, hostile + "\n\tmore")
