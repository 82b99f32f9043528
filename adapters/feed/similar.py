"""The finished iterations nearest to one, by cosine similarity of their stored digest vectors (numpy).

Every vector of the target's model is read and compared in memory: about 0.3 KB per iteration with the default
64-dimension model, so a million iterations is a few hundred MB and well under a second of arithmetic. Past that,
see README "Similar iterations" (pgvector, an ANN index).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import numpy as np
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from pydantic import BaseModel, ConfigDict

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.feed.embedder import VECTOR_DTYPE, from_bytes
from itertrack.adapters.feed.embeddings import POSTGRESQL, SQLITE, TABLE, placeholder
from itertrack.domain.model.errors import InvalidInputError, IterationError, StoreConfigError
from itertrack.domain.model.phases import Status
from itertrack.domain.model.text import parse_iteration_id
from itertrack.domain.service.tracker import PerformanceTracker

MAX_LIMIT = 1000
CONSUME_HINT = "run `itertrack consume embeddings` to embed the finished iterations"


class NotEmbeddedError(IterationError, LookupError):
    """The iteration exists but has no stored vector (still running, or the consumer has not reached it)."""

    def __init__(self, iteration_id: UUID, reason: str) -> None:
        super().__init__(f"iteration {iteration_id} has no embedding: {reason}")
        self.iteration_id = iteration_id


class MixedEmbeddingModelsError(IterationError):
    """The table holds vectors of more than one model, which are not comparable."""

    def __init__(self, models: list[tuple[str, str, int]]) -> None:
        names = "; ".join(f"{n} {v} ({d} dimensions)" for n, v, d in models)
        super().__init__(
            f"iteration_embeddings holds vectors of several models ({names}), which cannot be compared: "
            "re-embed every iteration with `itertrack consume embeddings --reset`"
        )
        self.models = models


class Neighbour(BaseModel):
    """One embedded iteration and its cosine similarity to the one asked about (1.0 for the same direction)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iteration_id: UUID
    agent_id: str
    iteration_number: int
    status: Status
    similarity: float
    digest: str


class SimilarIterations(BaseModel):
    """The answer of `similar`: the iteration asked about (similarity 1.0), the model, and its neighbours, nearest
    first (ties by iteration id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Neighbour
    model_name: str
    model_version: str
    dimensions: int
    neighbours: list[Neighbour]


def _datastore(tracker: PerformanceTracker) -> SQLiteDatastore | PostgresDatastore:
    datastore = getattr(store_of(tracker).factory, "datastore", None)
    if not isinstance(datastore, SQLiteDatastore | PostgresDatastore):
        raise StoreConfigError("store", type(store_of(tracker).factory).__name__, "has no database for embeddings")
    return datastore


@contextmanager
def _reading(datastore: SQLiteDatastore | PostgresDatastore) -> Iterator[tuple[Any, str]]:
    """A read transaction on the store's database; on PostgreSQL, unqualified names resolve in the store's schema."""
    with datastore.transaction(commit=False) as c:
        if isinstance(datastore, PostgresDatastore):
            c.execute(f'SET LOCAL search_path TO "{datastore.schema}", public')
            yield c, POSTGRESQL
        else:
            yield c, SQLITE


def _has_table(c: Any, dialect: str) -> bool:
    if dialect == SQLITE:
        c.execute("SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,))
    else:
        c.execute("SELECT to_regclass(%s) IS NOT NULL AS found", (TABLE,))
    row = c.fetchone()
    return row is not None and bool(row["found"])


def _neighbour(row: Any, similarity: float) -> Neighbour:
    return Neighbour(
        iteration_id=UUID(str(row["iteration_id"])),
        agent_id=row["agent_id"],
        iteration_number=row["iteration_number"],
        status=Status(row["status"]),
        similarity=similarity,
        digest=row["digest"],
    )


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError("limit", limit, f"must be an int from 1 to {MAX_LIMIT}")
    return limit


def similar_iterations(tracker: PerformanceTracker, iteration_id: UUID | str, *, limit: int = 5) -> SimilarIterations:
    """The `limit` finished iterations nearest to `iteration_id` by cosine similarity of their digests' vectors,
    among those embedded with the same model, excluding the iteration itself.

    Raises `InvalidIterationIdError` / `InvalidInputError` (id, limit), `IterationNotFoundError` (no such
    iteration), `NotEmbeddedError` (it exists but has no vector: running, or not consumed yet),
    `MixedEmbeddingModelsError`, `StoreConfigError` (memory store), and the store's typed errors.
    """
    iid = parse_iteration_id(iteration_id)
    count = _check_limit(limit)
    datastore = _datastore(tracker)
    with _reading(datastore) as (c, dialect):
        p = placeholder(dialect)
        target = None
        if _has_table(c, dialect):
            c.execute(f"SELECT * FROM {TABLE} WHERE iteration_id = {p}", (str(iid) if dialect == SQLITE else iid,))
            target = c.fetchone()
    if target is None:
        state = tracker.get_iteration(iid)  # IterationNotFoundError for an unknown id
        if state.status is Status.RUNNING:
            raise NotEmbeddedError(iid, "it is still running (only finished iterations are embedded)")
        raise NotEmbeddedError(iid, f"it finished after the embeddings consumer last ran; {CONSUME_HINT}")
    model = (str(target["model_name"]), str(target["model_version"]), int(target["dimensions"]))
    with _reading(datastore) as (c, _):
        c.execute(f"SELECT DISTINCT model_name, model_version, dimensions FROM {TABLE}")
        models = sorted((str(r["model_name"]), str(r["model_version"]), int(r["dimensions"])) for r in c.fetchall())
        if models != [model]:
            raise MixedEmbeddingModelsError(models)
        # Ids and vectors of all, then the rows of the nearest only: the digests of the rest are never read.
        c.execute(f"SELECT iteration_id, vector FROM {TABLE} ORDER BY iteration_id")
        itself = str(target["iteration_id"])
        others = [(r["iteration_id"], bytes(r["vector"])) for r in c.fetchall() if str(r["iteration_id"]) != itself]
        chosen: list[tuple[Any, float]] = []
        if others:
            matrix = np.frombuffer(b"".join(v for _, v in others), dtype=VECTOR_DTYPE).reshape(len(others), model[2])
            similarities = matrix.astype(np.float32) @ from_bytes(target["vector"], model[2])
            order = np.argsort(-similarities, kind="stable")[:count]
            chosen = [(others[i][0], round(float(similarities[i]), 6)) for i in order]
        found: dict[str, Any] = {}
        if chosen:
            c.execute(
                f"SELECT * FROM {TABLE} WHERE iteration_id IN ({', '.join(p for _ in chosen)})",
                tuple(key for key, _ in chosen),
            )
            found = {str(r["iteration_id"]): r for r in c.fetchall()}
    # A row gone meanwhile (a reset between the statements) is left out.
    neighbours = [_neighbour(found[str(k)], similarity) for k, similarity in chosen if str(k) in found]
    return SimilarIterations(
        target=_neighbour(target, 1.0),
        model_name=model[0],
        model_version=model[1],
        dimensions=model[2],
        neighbours=neighbours,
    )
