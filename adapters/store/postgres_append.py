"""The PostgreSQL append: a server-side function owned by the project, called as one prepared, binary round trip.

`itertrack_append_<events table>(originator ids, versions, topics, states, records)` in the store's schema
inserts the saving step's `agent_iterations` rows (when given), takes the events table's lock (the library's
`LOCK TABLE ... IN EXCLUSIVE MODE`: notification ids are then taken and committed one transaction at a time,
so they follow commit order and no follower reading `id > position` passes over an id that commits later),
sends the `NOTIFY` the library's subscriptions `LISTEN` for, inserts the events, and returns each event's
notification id; its overload `(originator id, version, topic, state)` does the same for one event and no
record (a tracked change), and returns that event's id. On an autocommit connection the call is one implicit
transaction: records and events commit together or not at all, and a taken (id, version) or record id aborts
it with `23505`.

The library's own server-side function (`POSTGRES_ENABLE_DB_FUNCTIONS`) takes no lock: two writers' ids can
commit out of order and a follower skips the earlier one for good (tests/integration/test_pg_append_order.py
reproduces it). It also cannot write the saving step's record.

`itertrack migrate` creates (or replaces) both forms with the tables. A store migrated by an older release
lacks it: opening a tracker on it raises `StoreNotMigratedError` naming the function, and so does a write
that finds it missing (a tracker started offline): there is no second, slower write path to fall back on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ProgrammingError, StoredEvent
from psycopg.sql import SQL, Composed, Identifier
from psycopg.types.json import Jsonb

from itertrack.adapters.store.record_rows import COLUMNS, RECORDS_TABLE
from itertrack.domain.model.records import IterationRecord

# PostgreSQL's identifier limit (NAMEDATALEN - 1 bytes): a longer name would be truncated, silently.
_MAX_IDENTIFIER = 63

# The function's body. Names of its parameters and result columns differ from every column name, so no
# reference inside is ambiguous. `records` is a jsonb array of objects (keys: the table's columns) or NULL.
_CREATE = """\
CREATE OR REPLACE FUNCTION {schema}.{function}(
    p_originator_ids {id_type}[], p_originator_versions bigint[], p_topics text[], p_states bytea[],
    p_records jsonb)
RETURNS TABLE (r_originator_id {id_type}, r_originator_version bigint, r_notification_id bigint)
LANGUAGE plpgsql
AS $itertrack_append$
BEGIN
    IF p_records IS NOT NULL THEN
        INSERT INTO {schema}.{records} ({columns})
        SELECT {columns} FROM jsonb_populate_recordset(NULL::{schema}.{records}, p_records);
    END IF;
    IF cardinality(p_originator_ids) > 0 THEN
        LOCK TABLE {schema}.{events} IN EXCLUSIVE MODE;
        NOTIFY {channel};
        RETURN QUERY
        INSERT INTO {schema}.{events} AS e (originator_id, originator_version, topic, state)
        SELECT * FROM unnest(p_originator_ids, p_originator_versions, p_topics, p_states)
        RETURNING e.originator_id, e.originator_version, e.notification_id;
    END IF;
END
$itertrack_append$"""

# The common case, one event and no record, has a form of its own (an overload of the same name): scalar
# parameters cost the client a fraction of what adapting four one-element arrays does (10 us against 60-80).
_CREATE_ONE = """\
CREATE OR REPLACE FUNCTION {schema}.{function}(
    p_originator_id {id_type}, p_originator_version bigint, p_topic text, p_state bytea)
RETURNS bigint
LANGUAGE plpgsql
AS $itertrack_append$
DECLARE
    r_notification_id bigint;
BEGIN
    LOCK TABLE {schema}.{events} IN EXCLUSIVE MODE;
    NOTIFY {channel};
    INSERT INTO {schema}.{events} (originator_id, originator_version, topic, state)
    VALUES (p_originator_id, p_originator_version, p_topic, p_state)
    RETURNING notification_id INTO r_notification_id;
    RETURN r_notification_id;
END
$itertrack_append$"""

_CALL_ONE = "SELECT {schema}.{function}(%b::{id_type}, %b::bigint, %b::text, %b::bytea)"

_CALL = (
    "SELECT r_originator_id, r_originator_version, r_notification_id FROM {schema}.{function}("
    "%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[], %b::jsonb)"
)


def append_function_name(events_table: str) -> str:
    """The function's name for an events table; `ProgrammingError` when it would pass PostgreSQL's 63 bytes."""
    name = f"itertrack_append_{events_table}"
    if len(name.encode()) > _MAX_IDENTIFIER:
        msg = f"Identifier too long: {name} (events table {events_table!r}: at most 46 bytes)"
        raise ProgrammingError(msg)
    return name


class AppendFunction:
    """The append function of one schema and events table: its CREATE, its call and the call's parameters.

    `schema`, `events_table` and `channel` are the library recorder's (its `LISTEN` channel); `id_type` is the
    originator id's column type (`uuid` or `text`, the datastore's `originator_id_type`).
    """

    def __init__(self, schema: str, events_table: str, channel: str, id_type: str) -> None:
        self.schema = schema
        self.name = append_function_name(events_table)
        parts = {
            "schema": Identifier(schema),
            "function": Identifier(self.name),
            "id_type": SQL(id_type),
            "records": Identifier(RECORDS_TABLE),
            "columns": SQL(", ").join(Identifier(c) for c in COLUMNS),
            "events": Identifier(events_table),
            "channel": Identifier(channel),
        }
        self.create_statements: list[Composed] = [SQL(_CREATE).format(**parts), SQL(_CREATE_ONE).format(**parts)]
        self.call_statement: Composed = SQL(_CALL).format(**parts)
        self.call_one_statement: Composed = SQL(_CALL_ONE).format(**parts)
        # What `to_regprocedure` finds when the function exists (its argument types name each form).
        self.signatures = (
            f"{self.name}({id_type}[], bigint[], text[], bytea[], jsonb)",
            f"{self.name}({id_type}, bigint, text, bytea)",
        )

    @staticmethod
    def one_params(stored_event: StoredEvent) -> list[Any]:
        """The parameters of the one-event form (`call_one_statement`), which returns the notification id."""
        return [stored_event.originator_id, stored_event.originator_version, stored_event.topic, stored_event.state]

    @staticmethod
    def params(stored_events: Sequence[StoredEvent], records: Sequence[IterationRecord]) -> list[Any]:
        """The call's parameters: the events as four arrays, the records as one jsonb array (None if none)."""
        return [
            [s.originator_id for s in stored_events],
            [s.originator_version for s in stored_events],
            [s.topic for s in stored_events],
            [s.state for s in stored_events],
            Jsonb([_record_object(r) for r in records]) if records else None,
        ]

    @staticmethod
    def notification_ids(rows: Sequence[tuple[Any, int, int]], stored_events: Sequence[StoredEvent]) -> list[int]:
        """The notification ids the call returned, in stored-event order (RETURNING's order is not promised).

        Raises `ProgrammingError` when the rows do not answer every event (never expected).
        """
        if len(rows) != len(stored_events):
            msg = f"the append returned {len(rows)} notification ids for {len(stored_events)} events"
            raise ProgrammingError(msg)
        if len(rows) == 1:
            return [rows[0][2]]
        ids = {(str(originator_id), version): nid for originator_id, version, nid in rows}
        try:
            return [ids[(str(s.originator_id), s.originator_version)] for s in stored_events]
        except KeyError as e:
            msg = f"the append returned no notification id for {e}"
            raise ProgrammingError(msg) from None


def _record_object(record: IterationRecord) -> dict[str, Any]:
    """One `agent_iterations` row as a JSON object for `jsonb_populate_recordset` (a missing key or JSON null is
    SQL NULL, as `None` was for each column)."""
    row: dict[str, Any] = {}
    for column in COLUMNS:
        value = getattr(record, column)
        if value is None:
            continue
        if isinstance(value, UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        row[column] = value
    return row
