"""Audit replay without decoding the same events twice: a bounded, in-process cache of iterations' event prefixes.

An iteration's stored events never change once committed, and its versions run 1..n with no gap, so the
decoded events 1..k read once stay true for ever: the state as of any version up to k is a fold of them,
and newer events can only come after k. A `Prefix` keeps, for one iteration, its decoded events 1..k, the
running maximum of their timestamps (to find the version as of an instant by bisection, with the same
answer as `replay.version_at`), and the states already asked for, by version. `ReplayCache` keeps the
prefixes of the iterations read most recently, at most `max_entries` entries in all (one per cached event
and one per remembered state); an iteration whose prefix alone is larger is answered but not kept.

What the cache cannot know is whether another process stored events after k; the reads in reads.py ask
the store for events after k when the answer depends on them (a version beyond k, an instant at or
after every cached timestamp), except when the last cached event ends the iteration: a finished iteration
refuses every change, so nothing can follow it.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.phases import TERMINAL_PHASES
from itertrack.domain.model.state import IterationState
from itertrack.domain.service.replay import state_of

# The default bound, in entries (cached events plus remembered states): about 2-3 KiB each, so at most ~30 MiB.
DEFAULT_MAX_ENTRIES = 10_000


class Prefix:
    """An iteration's first `tip` events, decoded, and the states as of their versions asked for so far.

    Safe to share between threads: `extend` and `state` hold the prefix's own lock while they change it.
    """

    __slots__ = ("_lock", "_states", "events", "finished", "highest")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[Iteration.Event] = []
        # highest[i] = the latest timestamp among events 1..i+1 (non-decreasing, so bisectable); filled when
        # an instant is asked for.
        self.highest: list[datetime] = []
        self._states: dict[int, IterationState] = {}
        # Whether the last event ends the iteration (then no event can follow it).
        self.finished = False

    @property
    def tip(self) -> int:
        """The last version held (0 when empty)."""
        return len(self.events)

    @property
    def entries(self) -> int:
        """What the prefix counts against the cache's bound: its events and its remembered states."""
        return len(self.events) + len(self._states)

    def extend(self, newer: Sequence[Iteration.Event]) -> bool:
        """Append the events that continue this prefix (versions tip+1, tip+2, ...); those already held are
        skipped (another thread read them first). False, and nothing changed, when they do not continue it
        (a gap: the store's versions are not 1..n)."""
        if not newer:
            return True
        with self._lock:
            tip = len(self.events)
            # The store returns versions ascending and unique (its key), so its first and last say it all.
            first = newer[0].originator_version
            fresh = newer[tip + 1 - first :] if first <= tip else newer
            if not fresh:
                return True
            if fresh[0].originator_version != tip + 1 or fresh[-1].originator_version != tip + len(fresh):
                return False
            self.events.extend(fresh)
            last = fresh[-1]
            self.finished = isinstance(last, Iteration.PhaseChanged) and last.phase in TERMINAL_PHASES
            return True

    def version_at(self, at: datetime) -> int:
        """How many held events have no earlier event after `at`: the version as of `at`, when an event after
        `at` is held (otherwise newer events may change the answer). 0 when `at` is before the first event."""
        return bisect_right(self._highest(), at)

    def latest(self) -> datetime:
        """The latest timestamp held (the prefix must not be empty)."""
        return self._highest()[-1]

    def _highest(self) -> list[datetime]:
        """The running maximum of the held timestamps, brought up to the tip (only instants need it)."""
        with self._lock:
            highest = self.highest
            if len(highest) < len(self.events):
                top = highest[-1] if highest else self.events[0].timestamp
                for event in self.events[len(highest) :]:
                    top = max(top, event.timestamp)
                    highest.append(top)
            return highest

    def state(self, version: int, *, remember: bool) -> IterationState:
        """The state as of `version` (1..tip): a remembered one, or a fold of the held events."""
        with self._lock:
            known = self._states.get(version)
            events = None if known is not None else self.events[:version]
        if known is None:
            assert events is not None
            built = state_of(events)
            if not remember:
                return built  # no one else holds it
            with self._lock:
                known = self._states.setdefault(version, built)
        # The state is frozen, but its metrics dict is not: each caller gets its own.
        return known.model_copy(update={"metrics": dict(known.metrics)})


class ReplayCache:
    """The prefixes of the iterations read most recently, at most `max_entries` entries in all (0: none kept)."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._prefixes: OrderedDict[object, Prefix] = OrderedDict()
        self._sizes: dict[object, int] = {}  # each kept prefix's entries when it was last accounted
        self._entries = 0

    def get(self, key: object) -> Prefix | None:
        """The iteration's prefix, if kept (it becomes the most recently used)."""
        with self._lock:
            prefix = self._prefixes.get(key)
            if prefix is not None:
                self._prefixes.move_to_end(key)
            return prefix

    def extended(self, key: object, prefix: Prefix | None, newer: Sequence[Iteration.Event]) -> Prefix | None:
        """`prefix` (a new one if None) with `newer` appended, kept if it fits the bound.

        None, and the iteration forgotten, when the events do not continue the prefix (not versions tip+1,
        tip+2, ...: never the case in a store whose versions run 1..n; the caller then replays them as they are).
        """
        target = prefix if prefix is not None else Prefix()
        if not target.extend(newer):
            self.forget(key)
            return None
        if newer or prefix is None:
            self._account(key, target)
        return target

    def state(self, key: object, prefix: Prefix, version: int, *, remember: bool = True) -> IterationState:
        """The state as of `version` (1..prefix.tip), remembered in the prefix while the bound allows.

        `remember=False` for a prefix just read (a cold read): built and handed over, no copy; a state asked
        for again of a held prefix is remembered then.
        """
        before = prefix.entries
        state = prefix.state(version, remember=remember and self.max_entries > 0)
        if prefix.entries != before:
            self._account(key, prefix)
        return state

    def _account(self, key: object, prefix: Prefix) -> None:
        """Keep `prefix` under `key` (as the most recently used) at its current size, evicting the least
        recently used prefixes beyond the bound; a prefix larger than the bound alone is not kept."""
        with self._lock:
            self._prefixes.pop(key, None)
            self._entries -= self._sizes.pop(key, 0)
            size = prefix.entries
            if size > self.max_entries:
                return
            self._prefixes[key] = prefix
            self._sizes[key] = size
            self._entries += size
            while self._entries > self.max_entries:
                evicted, _ = self._prefixes.popitem(last=False)
                self._entries -= self._sizes.pop(evicted)

    def forget(self, key: object) -> None:
        """Drop the iteration's prefix."""
        with self._lock:
            self._prefixes.pop(key, None)
            self._entries -= self._sizes.pop(key, 0)

    def clear(self) -> None:
        """Drop every prefix."""
        with self._lock:
            self._prefixes.clear()
            self._sizes.clear()
            self._entries = 0

    @property
    def entries(self) -> int:
        """Entries held now (events plus remembered states), never more than `max_entries`."""
        return self._entries

    def __len__(self) -> int:
        return len(self._prefixes)
