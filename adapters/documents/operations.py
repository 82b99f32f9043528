"""Documents of the operational commands: `verify`, `spool ...`, `prices ...`, `consumers`, `similar`."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal
from uuid import UUID

from pydantic import JsonValue

from itertrack.adapters.documents.envelope import document
from itertrack.adapters.documents.iterations import SavedRecord
from itertrack.adapters.documents.types import Instant, Model
from itertrack.domain.model.phases import Status


class Problem(Model):
    """One thing `verify` found wrong: which check, about which iteration (None: the store), what."""

    check: str
    iteration_id: UUID | None
    detail: str


@document("verify", 1, "`itertrack verify --json`: integrity of the events, records and read models.")
class VerifyData(Model):
    """What was checked, how far the read models are behind the log (since `behind_since`), and the problems."""

    ok: bool
    require_records: bool
    events: int
    iterations: int
    records: int
    read_model_rows: int
    read_model_position: int
    read_models_behind: int
    behind_since: Instant | None
    seconds: float
    problems: list[Problem]


class SpoolEntry(Model):
    """One change waiting in the spool (`change_id`: its number there), its event versions (none yet when
    `deferred`), whether it carries a record, and why it is stuck (None: it waits)."""

    change_id: int
    iteration_id: UUID
    versions: list[int]
    deferred: str | None
    with_record: bool
    stuck: str | None


class QuarantinedSpool(Model):
    """A damaged spool file moved aside, when, and how many of its changes can still be read."""

    path: str
    quarantined_at: Instant | None
    readable_rows: int


@document("spool.status", 1, "`itertrack spool status --json`: what is waiting, stuck or quarantined.")
class SpoolStatusData(Model):
    """The spool file, its counts and entries, and the damaged files moved aside."""

    path: str
    waiting: int
    stuck: int
    entries: list[SpoolEntry]
    quarantined: list[QuarantinedSpool]

    @classmethod
    def of(cls, status: Any, quarantined: list[Any]) -> SpoolStatusData:
        """The document of a `SpoolStatus` and the `QuarantinedSpool`s."""
        entries = []
        for e in status.entries:
            row = e.model_dump(mode="python")
            row["change_id"] = row.pop("id")
            entries.append(row)
        return cls.model_validate(
            {
                "path": status.path,
                "waiting": status.waiting,
                "stuck": status.stuck,
                "entries": entries,
                "quarantined": [q.model_dump(mode="python") for q in quarantined],
            }
        )


@document("spool.flush", 1, "`itertrack spool flush --json`: what one pass of forwarding did.")
class SpoolFlushData(Model):
    """Changes forwarded, found already stored, set aside as stuck; stuck and waiting after the pass."""

    forwarded_elsewhere: bool
    forwarded: int
    already_stored: int
    set_aside: int
    stuck: int
    waiting: int


@document("spool.recover", 1, "`itertrack spool recover FILE --json`: changes read from a damaged file, added.")
class SpoolRecoverData(Model):
    """How many changes were readable, and how many of them were added to the spool."""

    read: int
    added: int


@document("spool.retry", 1, "`itertrack spool retry ID... --json`: the stuck changes to be tried again.")
class SpoolRetryData(Model):
    """The changes whose stuck mark was cleared."""

    retried: list[int]


class StoredEvent(Model):
    """A spooled event: its version, topic and stored state (JSON, or `{"base64": ...}`)."""

    version: int
    topic: str
    state: JsonValue


class SpooledChange(Model):
    """Everything a spooled change holds."""

    change_id: int
    iteration_id: UUID
    stuck: str | None
    events: list[StoredEvent]
    deferred: JsonValue
    record: SavedRecord | None


@document("spool.discard", 1, "`itertrack spool discard ID... --json`: the stuck changes dropped, all they held.")
class SpoolDiscardData(Model):
    """The dropped changes."""

    discarded: list[SpooledChange]


@document("prices.list", 1, "`itertrack prices list --json`: the price table in force.")
class PricesListData(Model):
    """Where the table comes from, its version, and the table (a valid ITERTRACK_PRICES file's content)."""

    source: str
    version: str
    table: dict[str, JsonValue]


class CheckedModel(Model):
    """A (provider, model, day) of the store's LLM calls."""

    provider: str
    model: str | None
    day: date


class UnpricedModel(Model):
    """A (provider, model) without a price on some days: the first and last, how many, and why."""

    provider: str
    model: str | None
    first_day: date
    last_day: date
    days: int
    reason: str


@document("prices.check", 1, "`itertrack prices check --json`: the store's models the price table cannot price.")
class PricesCheckData(Model):
    """The table's source and version, what was checked, what has no price."""

    source: str
    version: str
    checked: list[CheckedModel]
    unpriced: list[UnpricedModel]


class ConsumerSkip(Model):
    """One event an operator skipped: where, what failed, why, by whom, when."""

    position: int
    event_key: str | None
    event_type: str | None
    error: str | None
    reason: str
    skipped_by: str
    skipped_at: Instant


class ConsumerState(Model):
    """One named consumer: its position and lag behind the log (`latest`), state, last failure, skips."""

    name: str
    position: int
    latest: int
    lag_events: int
    lag_seconds: float
    state: Literal["idle", "running", "failed"]
    failed_position: int | None
    last_error: str | None
    failed_at: Instant | None
    updated_at: Instant | None
    skips: list[ConsumerSkip]


@document("consumers", 1, "`itertrack consumers --json`: each named consumer of the log.")
class ConsumersData(Model):
    """The consumers."""

    consumers: list[ConsumerState]


class Neighbour(Model):
    """An embedded iteration and its cosine similarity to the one asked about."""

    iteration_id: UUID
    agent_id: str
    iteration_number: int
    status: Status
    similarity: float
    digest: str


@document("similar", 1, "`itertrack similar ID --json`: the finished iterations nearest to one, by digest.")
class SimilarData(Model):
    """The iteration asked about, the embedding model, and the neighbours, nearest first."""

    target: Neighbour
    model_name: str
    model_version: str
    dimensions: int
    neighbours: list[Neighbour]
