"""The base of every stored event: a frozen pydantic model with the originator's id, version and time."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from itertrack.domain.model.ids import random_id

# A random id for one event (not the tracker's clock: event ids must never repeat across processes): a version-4
# UUID from the domain's id seam (`ids.random_id` itself, no wrapper: it runs once per tracked change).
new_event_id = random_id


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
