"""Stores pydantic events: JSON from pydantic itself, and back through the event's class topic."""

from __future__ import annotations

import json
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic, resolve_topic
from pydantic import BaseModel

_HEADER_FIELDS = frozenset({"originator_id", "originator_version"})
# The same, as the serializer takes it (never changed: it is passed to every call).
_EXCLUDED: set[str] = set(_HEADER_FIELDS)


class PydanticMapper(Mapper[UUID]):
    """The library's default mapper does not round-trip frozen pydantic models; this one does.

    The originator id and version live in their own columns, so they are left out of the state.
    """

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        model = cast(BaseModel, domain_event)
        cls = type(model)
        class_version: int = getattr(cls, "class_version", 1)
        if class_version > 1:
            data = model.model_dump(mode="json", exclude=set(_HEADER_FIELDS))
            data["class_version"] = class_version
            state = json.dumps(data, separators=(",", ":")).encode()
        else:
            # `model_dump_json` without its wrapper, as bytes (the same JSON: it calls this serializer).
            state = cls.__pydantic_serializer__.to_json(model, exclude=_EXCLUDED)
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=get_topic(type(domain_event)),
            state=state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        state = stored_event.state
        try:
            if self.cipher:
                state = self.cipher.decrypt(state)
            if self.compressor:
                state = self.compressor.decompress(state)
            cls = resolve_topic(stored_event.topic)
            if getattr(cls, "class_version", 1) == 1 and b'"class_version"' not in state:
                # Fast path: pydantic parses the JSON itself, the header spliced into it
                # (a UUID as its hex digits: quicker to write than str(), and to parse).
                originator_id = stored_event.originator_id
                header = b'{"originator_id":"%s","originator_version":%d' % (
                    (originator_id.hex if isinstance(originator_id, UUID) else str(originator_id)).encode(),
                    stored_event.originator_version,
                )
                body = state[1:]
                return cast(
                    DomainEventProtocol[UUID],
                    cls.model_validate_json(header + (b"," + body if body.strip() != b"}" else body)),
                )
            data: dict[str, Any] = json.loads(state)
            from_version = data.pop("class_version", 1)
            to_version = getattr(cls, "class_version", 1)
            while from_version < to_version:
                getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(data)
                from_version += 1
            originator_id = stored_event.originator_id
            data["originator_id"] = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
            data["originator_version"] = stored_event.originator_version
            return cast(DomainEventProtocol[UUID], cls.model_validate(data))
        except Exception as e:
            msg = (
                f"cannot read stored event {stored_event.topic!r} of {stored_event.originator_id} "
                f"version {stored_event.originator_version}: {e}"
            )
            raise MapperDeserialisationError(msg) from e
