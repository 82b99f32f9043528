"""How a tracker built from a store URL finds its adapters: the composition root named in the package metadata.

The domain names no adapter. The installed package registers its composition root under the
`itertrack.wiring` entry-point group (pyproject.toml), and a tracker constructed without explicit
ports asks it to turn the store URL and settings into wired ports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Protocol

from itertrack.domain.model.errors import StoreConfigError
from itertrack.domain.service.clock import Clock
from itertrack.domain.service.replay_cache import DEFAULT_MAX_ENTRIES
from itertrack.domain.service.store_ports import IterationStore, IterationWriter, RetryPause

ENTRY_POINT_GROUP = "itertrack.wiring"


@dataclass(frozen=True, slots=True)
class TrackerPorts:
    """Everything a tracker needs from the outside, wired."""

    store: IterationStore
    writer: IterationWriter
    retry: RetryPause
    # Audit replay's bound (replay_cache.py): decoded events plus remembered states kept in this process.
    replay_cache_entries: int = DEFAULT_MAX_ENTRIES


class Wiring(Protocol):
    """The composition root's signature: a store URL (None: the settings' or the default) to wired ports."""

    def __call__(
        self, store: str | None, *, migrate: bool | None, env: Mapping[str, str], clock: Clock, max_attempts: int
    ) -> TrackerPorts: ...


@cache
def installed_wiring() -> Wiring:
    """The composition root the installed package registers (`StoreConfigError` if none or several)."""
    found = list(entry_points(group=ENTRY_POINT_GROUP))
    if len(found) != 1:
        names = ", ".join(sorted(e.value for e in found)) or "none"
        raise StoreConfigError(ENTRY_POINT_GROUP, names, "must name exactly one composition root (reinstall itertrack)")
    wiring: Wiring = found[0].load()
    return wiring
