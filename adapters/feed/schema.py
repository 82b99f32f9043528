"""What the relay publishes: the message schema (`itertrack.event/1`) and the subject of each message.

A message is UTF-8 JSON, one object per event of the log::

    {
      "schema": "itertrack.event/1",
      "type": "PhaseChanged",
      "iteration_id": "0b6f3c1e-8d7a-4f43-9a57-3c0f5f1f2a10",
      "version": 3,
      "position": 42,
      "timestamp": "2026-11-30T05:15:32.123456Z",
      "agent_id": "trader.7",
      "event_id": "5d0e7c43-8a1b-4f6e-9d2c-1e9b8f7a6c55",
      "payload": {"phase": "backtesting", "error": null}
    }

`type` is the event's class name (`Started`, `PhaseChanged`, `MetricsRecorded`, `LLMCallRecorded`, `RecordSaved`);
`version` the iteration's version the event made (1 for `Started`); `position` its place in the store's log
(strictly increasing along the log, not dense); `timestamp` when it happened, ISO 8601 in UTC with microseconds;
`payload` the event's content fields as its pydantic model dumps them in JSON mode. A reader checks `schema`:
fields are only added within version 1; a change of meaning or a removal is version 2.

Subjects are `itertrack.events.<agent token>.<type>`. The agent token is the agent id's UTF-8 bytes with every
byte outside `[A-Za-z0-9-]` written as `_XX` (two upper-case hex digits; `_` itself is `_5F`), and the empty id as
a lone `_`: any id (dots, spaces, `*`, `>`, unicode) is one valid subject token, the map is reversible
(`decode_agent_token`) and ids made of letters, digits and hyphens read as themselves. An agent id is at most
200 characters (`MAX_AGENT_ID`), so a token is at most 2,400 characters.
"""

from __future__ import annotations

import json
import re
from datetime import UTC
from typing import Any, Final
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from itertrack.adapters.feed.consumer import Delivery
from itertrack.domain.model.errors import InvalidInputError

SCHEMA: Final = "itertrack.event/1"
SUBJECT_PREFIX: Final = "itertrack.events"
SUBJECTS: Final = f"{SUBJECT_PREFIX}.>"
# Headers of every message: the idempotency key (JetStream drops a repeat within its duplicate window) and the
# message's log position (the relay reads it back from the stream's last message when it starts).
MSG_ID_HEADER: Final = "Nats-Msg-Id"
POSITION_HEADER: Final = "Itertrack-Position"
SCHEMA_HEADER: Final = "Itertrack-Schema"

_PLAIN = re.compile(rb"[A-Za-z0-9-]")
_TOKEN = re.compile(r"^(?:[A-Za-z0-9-]|_[0-9A-F]{2})*$")
_EMPTY_TOKEN: Final = "_"  # noqa: S105  # the empty agent id's token, not a secret
_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")


def encode_agent_token(agent_id: str) -> str:
    """The subject token of `agent_id`: `[A-Za-z0-9-]` kept, every other UTF-8 byte as `_XX`; `""` as `_`.

    Raises `InvalidInputError` (field `agent_id`) for a string that is not encodable as UTF-8.
    """
    try:
        raw = agent_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError("agent_id", agent_id, "must be encodable as UTF-8") from None
    if not raw:
        return _EMPTY_TOKEN
    return "".join(chr(b) if _PLAIN.fullmatch(bytes((b,))) else f"_{b:02X}" for b in raw)


def decode_agent_token(token: str) -> str:
    """The agent id `token` encodes (the inverse of `encode_agent_token`).

    Raises `InvalidInputError` (field `agent token`) when `token` is not an encoding of a UTF-8 string.
    """
    if token == _EMPTY_TOKEN:
        return ""
    if not token or not _TOKEN.fullmatch(token):
        raise InvalidInputError("agent token", token, "is not an encoded agent id ([A-Za-z0-9-] and _XX only)")
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "_":
            raw.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.append(ord(token[i]))
            i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("agent token", token, "does not decode to UTF-8 text") from None


def check_subject_prefix(prefix: str) -> str:
    """A subject prefix: dot-separated tokens of `[A-Za-z0-9_-]` (`itertrack.events`); `InvalidInputError` else."""
    if not _PREFIX.fullmatch(prefix):
        raise InvalidInputError("subject_prefix", prefix, "must be dot-separated tokens of letters, digits, _ and -")
    return prefix


def subject_of(agent_id: str, event_type: str, prefix: str = SUBJECT_PREFIX) -> str:
    """`<prefix>.<agent token>.<event type>` for one event (prefix `itertrack.events` unless configured)."""
    return f"{prefix}.{encode_agent_token(agent_id)}.{event_type}"


def agent_of_subject(subject: str, prefix: str = SUBJECT_PREFIX) -> str:
    """The agent id of a relay subject (raises `InvalidInputError` for any other subject)."""
    parts = subject.split(".")
    n = prefix.count(".") + 1
    if len(parts) != n + 2 or ".".join(parts[:n]) != prefix:
        raise InvalidInputError("subject", subject, f"is not {prefix}.<agent token>.<type>")
    return decode_agent_token(parts[n])


class EventMessage(BaseModel):
    """One published event, as a reader parses it (`parse_message`)."""

    # Version 1 may gain fields: a reader keeps them. `schema` is the JSON name (a BaseModel method's name).
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    schema_: str = Field(alias="schema")
    type: str
    iteration_id: UUID
    version: int
    position: int
    timestamp: AwareDatetime
    agent_id: str
    event_id: UUID
    payload: dict[str, Any]


def utc_timestamp(delivery: Delivery) -> str:
    """The event's time as ISO 8601 in UTC with microseconds and a `Z`: `2026-11-30T05:15:32.123456Z`."""
    moment = delivery.event.timestamp.astimezone(UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def message_of(delivery: Delivery) -> dict[str, Any]:
    """The `itertrack.event/1` object of one delivery (see the module docstring for the fields)."""
    event = delivery.event
    dumped = event.model_dump(mode="json")
    return {
        "schema": SCHEMA,
        "type": delivery.event_type,
        "iteration_id": str(delivery.iteration_id),
        "version": delivery.version,
        "position": delivery.position,
        "timestamp": utc_timestamp(delivery),
        "agent_id": delivery.agent_id,
        "event_id": str(event.event_id),
        "payload": {name: dumped[name] for name in type(event).content_fields},
    }


def encode_message(delivery: Delivery) -> bytes:
    """The message body: `message_of(delivery)` as compact UTF-8 JSON."""
    return json.dumps(message_of(delivery), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def headers_of(delivery: Delivery) -> dict[str, str]:
    """The message's headers: `Nats-Msg-Id` (the delivery's key), its position and the schema."""
    return {MSG_ID_HEADER: delivery.key, POSITION_HEADER: str(delivery.position), SCHEMA_HEADER: SCHEMA}


def parse_message(body: bytes) -> EventMessage:
    """A published message read back; raises `InvalidInputError` (field `message`) when it is not one of
    schema `itertrack.event/1`."""
    try:
        data = json.loads(body)
    except ValueError as e:
        raise InvalidInputError("message", body[:80], f"is not JSON: {e}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        schema = data.get("schema") if isinstance(data, dict) else None
        raise InvalidInputError("message.schema", schema, f"is not {SCHEMA}")
    try:
        return EventMessage.model_validate(data)
    except ValidationError as e:
        raise InvalidInputError("message", body[:80], f"breaks schema {SCHEMA}: {e.errors()[0]['msg']}") from None
