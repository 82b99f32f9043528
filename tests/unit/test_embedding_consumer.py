"""The embeddings consumer's rules, with a fake embedder and a cursor that records what it is asked to run."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import numpy as np
import pytest
from fake_clock import FakeClock

from itertrack.adapters.feed.consumer import Delivery
from itertrack.adapters.feed.embedder import Embedder, Vectors, from_bytes, normalised, to_bytes
from itertrack.adapters.feed.embeddings import EmbeddingConsumer
from itertrack.domain import InvalidInputError, Iteration, PerformanceTracker

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ID = UUID("12345678-1234-4678-9234-567812345678")


class FakeEmbedder(Embedder):
    """Counts letters a-h: a deterministic 8-dimension vector per text."""

    name = "fake"
    version = "1"
    dimensions = 8

    def __init__(self) -> None:
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.texts.extend(texts)
        return normalised([[t.count(ch) for ch in "abcdefgh"] for t in texts])


class RecordingCursor:
    """Records statements; every query finds no row."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.statements.append((sql, params))

    def fetchone(self) -> None:
        return None


def events() -> list[Iteration.Event]:
    it = Iteration.start(ID, "agent-a", 4, T0)
    it.change_phase("analysis", None, T0 + timedelta(seconds=2))
    it.change_phase("failed", "boom", T0 + timedelta(seconds=5))
    return it.take_events()


def delivery(event: Iteration.Event, position: int) -> Delivery:
    return Delivery(event=event, position=position, key=f"{ID}:{event.originator_version}", agent_id="agent-a")


@pytest.fixture
def tracker() -> Iterator[PerformanceTracker]:
    with PerformanceTracker(store="memory://", clock=FakeClock(step_ms=0)) as t:
        yield t


def test_only_the_finishing_phase_change_is_embedded(tracker: PerformanceTracker) -> None:
    """Started and a non-terminal PhaseChanged write nothing; the finish checks the model once, then upserts the
    digest's row with the model's name, version, dimensions and the vector as float32 bytes."""
    embedder = FakeEmbedder()
    history = events()
    consumer = EmbeddingConsumer(tracker, {}, embedder=embedder, loader=lambda iid: history)
    cursor = RecordingCursor()
    for position, event in enumerate(history[:2], start=1):
        consumer.handle_in(delivery(event, position), cursor, "sqlite")
    assert cursor.statements == []
    consumer.handle_in(delivery(history[2], 3), cursor, "sqlite")
    consumer.handle_in(delivery(history[2], 3), cursor, "sqlite")
    check, upsert, again = cursor.statements
    assert check[0].startswith("SELECT model_name")
    assert check[1] == ("fake", "1", 8)
    assert upsert[0].startswith("INSERT INTO iteration_embeddings")
    assert "ON CONFLICT (iteration_id)" in upsert[0]
    row = upsert[1]
    assert row[:8] == (str(ID), "agent-a", 4, "failed", embedder.texts[0], "fake", "1", 8)
    assert embedder.texts[0].startswith("agent agent-a iteration 4 failed in analysis after 5.0 s")
    assert (from_bytes(row[8], 8) == embedder.embed([embedder.texts[0]])[0]).all()
    assert again == upsert  # a redelivery writes the same row again, and checks the model no more
    assert row[10] == FakeClock(step_ms=0).now().isoformat()  # embedded_at: the tracker's clock


def test_bad_dialect_and_unknown_option_are_typed_errors(tracker: PerformanceTracker) -> None:
    """An unknown sql_dialect is refused before anything runs; an option is refused naming it."""
    consumer = EmbeddingConsumer(tracker, {}, embedder=FakeEmbedder(), loader=lambda iid: events())
    cursor = RecordingCursor()
    with pytest.raises(InvalidInputError, match="sql_dialect"):
        consumer.handle_in(delivery(events()[2], 3), cursor, "mysql")
    with pytest.raises(InvalidInputError, match="sql_dialect"):
        consumer.migrate(cursor, "mysql")
    assert cursor.statements == []
    with pytest.raises(InvalidInputError, match="option model"):
        EmbeddingConsumer(tracker, {"model": "x"}, embedder=FakeEmbedder())


def test_vectors_are_unit_float32_and_round_trip_as_bytes() -> None:
    """normalised() scales rows to norm 1 and leaves a zero row zero; stored bytes are 4 per float, little-endian;
    bytes of another length are refused."""
    vectors = normalised([[3.0, 4.0], [0.0, 0.0]])
    assert vectors.dtype == np.float32
    assert vectors.tolist() == [[pytest.approx(0.6), pytest.approx(0.8)], [0.0, 0.0]]
    data = to_bytes(vectors[0])
    assert data == np.array([0.6, 0.8], dtype="<f4").tobytes()
    assert from_bytes(data, 2).tolist() == vectors[0].tolist()
    with pytest.raises(ValueError, match="holds 2 floats, not 3"):
        from_bytes(data, 3)
