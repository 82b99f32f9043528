"""The base of every stored event: a frozen pydantic model with the originator's id, version and time."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from itertrack.domain.model.random_ids import random_uuid4


def new_event_id() -> UUID:
    """A random id for one event (not the tracker's clock: event ids must never repeat across processes): a
    version-4 UUID from `random_ids.random_uuid4` (no system call, so deciding a change never releases the GIL)."""
    return random_uuid4()


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
