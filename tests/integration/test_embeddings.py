"""The embeddings consumer on real SQLite and PostgreSQL stores with the real offline model, and `similar`.

The feed's runner is driven by hand here (embedding_support.consume): `migrate` and `handle_in` get a cursor of
the store's own datastore, in a transaction per delivery, as the runner hands them."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import pytest
from embedding_support import Spec, consume, deliveries, dialect_of, rows, run_iteration, transaction
from fake_clock import FakeClock

from itertrack.adapters.feed.embedder import StaticModelEmbedder, from_bytes
from itertrack.adapters.feed.embeddings import EmbeddingConsumer, EmbeddingModelChangedError
from itertrack.adapters.feed.similar import MixedEmbeddingModelsError, NotEmbeddedError, similar_iterations
from itertrack.domain import IterationNotFoundError, PerformanceTracker

PHASES = ["scan_generation", "scan_execution", "execution_generation", "backtest_execution", "analysis"]
KEY_ERROR = "KeyError: 'close' column missing in price data during backtest"
SG, EG = "scan_generation", "execution_generation"

OpenTracker = Callable[..., PerformanceTracker]


@pytest.fixture(scope="module")
def embedder() -> StaticModelEmbedder:
    """The real model, loaded once for the module."""
    return StaticModelEmbedder()


def _stays(phases: list[str], seconds: list[float]) -> list[tuple[str, float]]:
    return list(zip(phases, seconds, strict=True))


SIX = {
    # A: failed in backtest (KeyError); B: A's near-twin (same error, times and tokens a few % off).
    "A": Spec("momentum", 1, _stays(PHASES[:4], [8, 3, 12, 17]), {SG: 6200, EG: 12200}, KEY_ERROR),
    "B": Spec("momentum", 2, _stays(PHASES[:4], [7.9, 3.1, 11.9, 16.7]), {SG: 6100, EG: 11950}, KEY_ERROR),
    # C and D: fast completed twins.
    "C": Spec("momentum", 3, _stays(PHASES, [4, 1, 6, 7.4, 2]), {SG: 3000, EG: 6000}, "completed"),
    "D": Spec("momentum", 4, _stays(PHASES, [4.2, 1.1, 6.1, 7.5, 2]), {SG: 3100, EG: 6050}, "completed"),
    # E: failed in scan_execution (HTTP 429); F: a slow completed one.
    "E": Spec("breakout", 1, _stays(PHASES[:2], [9.2, 2.7]), {SG: 7020}, "scanner returned HTTP 429 Too Many Requests"),
    "F": Spec("meanrev", 1, _stays(PHASES, [30, 20, 90, 420, 51.7]), {SG: 40000, EG: 105000}, "completed"),
}


def test_one_row_per_finished_iteration_and_redelivery_does_not_duplicate(
    durable_store: str, open_tracker: OpenTracker, embedder: StaticModelEmbedder
) -> None:
    """Each finished iteration gets one row (digest, model, a unit float32 vector); a running one none; handling
    every delivery again leaves the same rows."""
    clock = FakeClock(step_ms=0)
    tracker = open_tracker(durable_store, clock=clock)
    done = run_iteration(tracker, clock, Spec("a", 1, [("scan_generation", 2.0)], {"scan_generation": 50}, "completed"))
    failed = run_iteration(tracker, clock, Spec("a", 2, [("backtest_execution", 1.5)], {}, "boom"))
    run_iteration(tracker, clock, Spec("a", 3, [("analysis", 1.0)], {}, None))
    consumer = EmbeddingConsumer(tracker, {}, embedder=embedder)
    consume(tracker, consumer)
    first = rows(tracker)
    assert [(UUID(str(r["iteration_id"])), r["status"]) for r in first] == [(done, "completed"), (failed, "failed")]
    row = first[1]
    assert row["digest"] == (
        "agent a iteration 2 failed in backtest_execution after 1.5 s\n"
        "phases: initializing 0.0 s, backtest_execution 1.5 s\n"
        "error: boom"
    )
    assert (row["model_name"], row["model_version"], row["dimensions"]) == embedder.model_id
    vector = from_bytes(row["vector"], 64)
    assert abs(float(vector @ vector) - 1.0) < 1e-5
    assert (vector == embedder.embed([row["digest"]])[0]).all()

    consume(tracker, consumer)  # every delivery again, as after a crash before the checkpoint moved
    again = rows(tracker)
    assert [r["iteration_id"] for r in again] == [r["iteration_id"] for r in first]
    assert [bytes(r["vector"]) for r in again] == [bytes(r["vector"]) for r in first]


def test_the_row_commits_with_the_callers_transaction(
    durable_store: str, open_tracker: OpenTracker, embedder: StaticModelEmbedder
) -> None:
    """handle_in writes on the cursor it is given: rolled back with it, the row is not there."""
    clock = FakeClock(step_ms=0)
    tracker = open_tracker(durable_store, clock=clock)
    run_iteration(tracker, clock, Spec("a", 1, [("analysis", 1.0)], {}, "completed"))
    consumer = EmbeddingConsumer(tracker, {}, embedder=embedder)
    dialect = dialect_of(tracker)
    with transaction(tracker) as c:
        consumer.migrate(c, dialect)
    (finish,) = [d for d in deliveries(tracker) if d.event_type == "PhaseChanged" and d.version == 3]
    with transaction(tracker, commit=False) as c:
        consumer.handle_in(finish, c, dialect)
    assert rows(tracker) == []
    with transaction(tracker) as c:
        consumer.handle_in(finish, c, dialect)
    assert len(rows(tracker)) == 1


def test_similar_lists_hand_checked_neighbours(
    durable_store: str, open_tracker: OpenTracker, embedder: StaticModelEmbedder
) -> None:
    """Near-twins are each other's nearest (A<->B failed in backtest with one error, C<->D fast completions); the
    slow completion F's two nearest are the other completions C and D (same outcome, same six phases); the
    iteration itself is never listed."""
    clock = FakeClock(step_ms=0)
    tracker = open_tracker(durable_store, clock=clock)
    ids = {key: run_iteration(tracker, clock, spec) for key, spec in SIX.items()}
    consume(tracker, EmbeddingConsumer(tracker, {}, embedder=embedder))
    name = {iid: key for key, iid in ids.items()}

    def nearest(key: str, limit: int = 5) -> list[str]:
        return [name[n.iteration_id] for n in similar_iterations(tracker, ids[key], limit=limit).neighbours]

    for key, expected in (("A", "B"), ("B", "A"), ("C", "D"), ("D", "C")):
        found = nearest(key)
        assert found[0] == expected, (key, found)
        assert sorted(found) == sorted(set(ids) - {key})
    assert set(nearest("F", limit=2)) == {"C", "D"}
    answer = similar_iterations(tracker, ids["A"], limit=1)
    assert answer.target.iteration_id == ids["A"]
    assert (answer.model_name, answer.model_version, answer.dimensions) == embedder.model_id
    (twin,) = answer.neighbours
    assert (twin.agent_id, twin.iteration_number, twin.status.value) == ("momentum", 2, "failed")
    assert twin.similarity > 0.99
    assert twin.digest.endswith("error: " + KEY_ERROR)


def test_similar_says_why_an_iteration_has_no_neighbours(
    durable_store: str, open_tracker: OpenTracker, embedder: StaticModelEmbedder
) -> None:
    """Typed errors: an unknown id, a running iteration, and a finished one the consumer has not reached
    (which says to run `itertrack consume embeddings`)."""
    clock = FakeClock(step_ms=0)
    tracker = open_tracker(durable_store, clock=clock)
    running = run_iteration(tracker, clock, Spec("a", 1, [("analysis", 1.0)], {}, None))
    with pytest.raises(NotEmbeddedError, match="still running"):
        similar_iterations(tracker, running)  # before the table exists
    consume(tracker, EmbeddingConsumer(tracker, {}, embedder=embedder))
    late = run_iteration(tracker, clock, Spec("a", 2, [("analysis", 1.0)], {}, "completed"))
    with pytest.raises(NotEmbeddedError, match="itertrack consume embeddings"):
        similar_iterations(tracker, late)
    with pytest.raises(IterationNotFoundError):
        similar_iterations(tracker, UUID(int=7))


def test_a_model_change_is_refused_until_reset(
    durable_store: str, open_tracker: OpenTracker, embedder: StaticModelEmbedder
) -> None:
    """Vectors of another model version are never mixed in: the consumer stops with EmbeddingModelChangedError
    naming both models and the reset command; `similar` refuses a table holding two models; after `reset`
    (the runner's --reset hook) every iteration is re-embedded with the new model."""
    clock = FakeClock(step_ms=0)
    tracker = open_tracker(durable_store, clock=clock)
    run_iteration(tracker, clock, Spec("a", 1, [("analysis", 1.0)], {}, "completed"))
    consume(tracker, EmbeddingConsumer(tracker, {}, embedder=embedder))
    upgraded = StaticModelEmbedder()
    upgraded.version = "0.2.0"
    consumer = EmbeddingConsumer(tracker, {}, embedder=upgraded)
    second = run_iteration(tracker, clock, Spec("a", 2, [("analysis", 1.0)], {}, "completed"))
    with pytest.raises(EmbeddingModelChangedError, match=r"0\.1\.1.*0\.2\.0.*--reset"):
        consume(tracker, consumer)
    assert len(rows(tracker)) == 1  # nothing written by the refused run

    with transaction(tracker) as c:
        consumer.reset(c, dialect_of(tracker))
    consume(tracker, consumer)
    assert sorted(r["model_version"] for r in rows(tracker)) == ["0.2.0", "0.2.0"]

    with transaction(tracker) as c:  # a mix no consumer writes, made by hand
        c.execute("UPDATE iteration_embeddings SET model_version = 'old' WHERE iteration_number = 1")
    with pytest.raises(MixedEmbeddingModelsError, match="--reset"):
        similar_iterations(tracker, second)
