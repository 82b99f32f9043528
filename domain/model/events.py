"""The base of every stored event: a frozen pydantic model with the originator's id, version and time."""

from __future__ import annotations

import os
from typing import ClassVar
from uuid import UUID, SafeUUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# The bits `UUID(..., version=4)` clears, and those it sets (variant RFC 4122, version 4).
_V4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_V4_SET = (0x8000 << 48) | (4 << 76)
_UNKNOWN = SafeUUID.unknown


def new_event_id() -> UUID:
    """A random id for one event (not the tracker's clock: event ids must never repeat across processes).

    `UUID(bytes=os.urandom(16), version=4)`, without the constructor's checks of arguments it is not given
    (made once per tracked change): the same value, type and `is_safe`.
    """
    uid = object.__new__(UUID)
    object.__setattr__(uid, "int", (int.from_bytes(os.urandom(16)) & _V4_CLEAR) | _V4_SET)
    object.__setattr__(uid, "is_safe", _UNKNOWN)
    return uid


class DomainEvent(BaseModel):
    """An immutable fact about one aggregate, at one version, at one timezone-aware instant."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Bumped (with an `upcast_vN_vN+1` static method) when a stored shape changes.
    class_version: ClassVar[int] = 1

    originator_id: UUID
    originator_version: int
    timestamp: AwareDatetime
    # Unique per event: after a key conflict, stored rows equal to ours can only be our own commit,
    # never another writer's event that happens to have the same content and timestamp.
    event_id: UUID = Field(default_factory=new_event_id)
