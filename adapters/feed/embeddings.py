"""The iteration-embedding consumer: a digest of each finished iteration, embedded and stored exactly once.

`EmbeddingConsumer` (name `embeddings`) is a `TransactionalConsumer`: on the `PhaseChanged` event that finishes
an iteration (to `completed` or `failed`, `TERMINAL_PHASES`), it loads the iteration's events through the tracker,
builds its digest (`projections/digest.py`), embeds it and upserts one row of `iteration_embeddings`, in the
transaction that moves the consumer's checkpoint: the row and the checkpoint commit together or not at all, and a
redelivered event rewrites the same row (keyed by iteration id). Other events are not wanted: nothing changes an
iteration after it finished (a `RecordSaved` after the finish is refused by the aggregate), so the finishing
event is the one moment the digest is complete.

Table `iteration_embeddings` (in the store's database: the SQLite file, or the store's PostgreSQL schema):
iteration_id (primary key), agent_id, iteration_number, status (`completed` | `failed`), digest (the text
embedded), model_name, model_version, dimensions, vector (float32 little-endian bytes: BLOB / bytea),
finished_at (the finishing event's time), embedded_at.

A model change (another model, or another version of it, is installed) is refused at the first finished
iteration, with `EmbeddingModelChangedError`: the consumer stops there (never mixing two models' vectors);
`itertrack consume embeddings --reset` empties the table in the checkpoint's reset transaction (`reset`) and
re-embeds every finished iteration with the installed model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from itertrack.adapters.feed.consumer import Delivery, TransactionalConsumer
from itertrack.adapters.feed.embedder import Embedder, default_embedder, to_bytes
from itertrack.domain.model.errors import InvalidInputError, IterationError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.phases import TERMINAL_PHASES
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.projections.digest import iteration_digest

TABLE = "iteration_embeddings"
SQLITE = "sqlite"
POSTGRESQL = "postgresql"
COLUMNS = (
    "iteration_id",
    "agent_id",
    "iteration_number",
    "status",
    "digest",
    "model_name",
    "model_version",
    "dimensions",
    "vector",
    "finished_at",
    "embedded_at",
)
_TYPES = {
    SQLITE: ("TEXT PRIMARY KEY", "BLOB", "TEXT"),
    POSTGRESQL: ("UUID PRIMARY KEY", "BYTEA", "TIMESTAMPTZ"),
}

HistoryLoader = Callable[[UUID], Sequence[Iteration.Event]]


class EmbeddingModelChangedError(IterationError):
    """The stored vectors were made by another model (or version) than the one installed."""

    def __init__(self, stored: tuple[str, str, int], installed: tuple[str, str, int]) -> None:
        def named(model: tuple[str, str, int]) -> str:
            return f"{model[0]} {model[1]} ({model[2]} dimensions)"

        super().__init__(
            f"iteration_embeddings holds vectors of {named(stored)}, the installed model is {named(installed)}: "
            "re-embed every iteration with `itertrack consume embeddings --reset`"
        )
        self.stored = stored
        self.installed = installed


def placeholder(sql_dialect: str) -> str:
    """The parameter placeholder of a dialect (`InvalidInputError` naming `sql_dialect` for another)."""
    if sql_dialect == SQLITE:
        return "?"
    if sql_dialect == POSTGRESQL:
        return "%s"
    raise InvalidInputError("sql_dialect", sql_dialect, f"must be {SQLITE!r} or {POSTGRESQL!r}")


def create_statement(sql_dialect: str) -> str:
    """The table's CREATE statement (idempotent) for a dialect."""
    placeholder(sql_dialect)
    key, blob, instant = _TYPES[sql_dialect]
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} (iteration_id {key}, agent_id TEXT NOT NULL, "
        "iteration_number BIGINT NOT NULL, status TEXT NOT NULL, digest TEXT NOT NULL, model_name TEXT NOT NULL, "
        f"model_version TEXT NOT NULL, dimensions INTEGER NOT NULL, vector {blob} NOT NULL, "
        f"finished_at {instant} NOT NULL, embedded_at {instant} NOT NULL)"
    )


def _instant(moment: datetime, sql_dialect: str) -> Any:
    return moment.isoformat() if sql_dialect == SQLITE else moment


class EmbeddingConsumer(TransactionalConsumer):
    """Embeds the digest of every finished iteration into `iteration_embeddings` (see the module docstring).

    `EmbeddingConsumer(tracker, options)` is the `itertrack.consumers` factory: `tracker` is the open tracker of
    the followed store (its `history` loads an iteration's events, its clock stamps `embedded_at`); no option is
    accepted (`InvalidInputError` naming the first). `embedder` (default: the `itertrack[embed]` model,
    `EmbedderUnavailableError` when not installed) and `loader` (default: `tracker.history`) replace the parts.
    """

    name: ClassVar[str] = "embeddings"
    event_types: ClassVar[tuple[str, ...]] = ("PhaseChanged",)

    def __init__(
        self,
        tracker: PerformanceTracker,
        options: Mapping[str, str] | None = None,
        *,
        embedder: Embedder | None = None,
        loader: HistoryLoader | None = None,
    ) -> None:
        for key, value in (options or {}).items():
            raise InvalidInputError(f"option {key}", value, "is not an option of the embeddings consumer")
        self.tracker = tracker
        self.embedder = embedder if embedder is not None else default_embedder()
        self.loader: HistoryLoader = loader if loader is not None else tracker.history
        self._model_checked = False

    @property
    def model(self) -> tuple[str, str, int]:
        """The installed model: (name, version, dimensions)."""
        return self.embedder.model_id

    def migrate(self, cursor: Any, sql_dialect: str) -> None:
        """Create `iteration_embeddings` if it does not exist."""
        cursor.execute(create_statement(sql_dialect))

    def reset(self, cursor: Any, sql_dialect: str) -> None:
        """Empty the table (the runner calls this in the transaction that sets the checkpoint back to 0)."""
        placeholder(sql_dialect)
        cursor.execute(f"DELETE FROM {TABLE}")
        self._model_checked = False

    def handle_in(self, delivery: Delivery, cursor: Any, sql_dialect: str) -> None:
        """Upsert the row of the iteration `delivery` finishes (anything else is ignored).

        Raises `EmbeddingModelChangedError` when the table holds another model's vectors, the tracker's
        errors when the iteration's events cannot be read, the embedder's when it fails.
        """
        p = placeholder(sql_dialect)
        event = delivery.event
        if not isinstance(event, Iteration.PhaseChanged) or event.phase not in TERMINAL_PHASES:
            return
        if not self._model_checked:
            self._refuse_other_model(cursor, p)
        events = [e for e in self.loader(delivery.iteration_id) if e.originator_version <= delivery.version]
        digest = iteration_digest(events)
        vector = self.embedder.embed([digest.text])[0]
        iid: Any = str(digest.iteration_id) if sql_dialect == SQLITE else digest.iteration_id
        values = (
            iid,
            digest.agent_id,
            digest.iteration_number,
            digest.status.value,
            digest.text,
            *self.model,
            to_bytes(vector),
            _instant(event.timestamp, sql_dialect),
            _instant(self.tracker.clock.now(), sql_dialect),
        )
        updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
        cursor.execute(
            f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join(p for _ in COLUMNS)}) "
            f"ON CONFLICT (iteration_id) DO UPDATE SET {updates}",
            values,
        )

    def _refuse_other_model(self, cursor: Any, p: str) -> None:
        """Once per run (one runner per name writes the table): any row of another model stops the consumer."""
        cursor.execute(
            f"SELECT model_name, model_version, dimensions FROM {TABLE} "
            f"WHERE model_name <> {p} OR model_version <> {p} OR dimensions <> {p} LIMIT 1",
            self.model,
        )
        row = cursor.fetchone()
        if row is not None:
            stored = (str(row["model_name"]), str(row["model_version"]), int(row["dimensions"]))
            raise EmbeddingModelChangedError(stored, self.model)
        self._model_checked = True
