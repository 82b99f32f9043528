"""`GroupCommit.append_many`: one caller's batch of changes shares transactions, and each change gets its own
outcome (fake commit functions stand in for the store: the store-backed behaviour is in
tests/integration/test_group_commit.py and test_async_tracker.py)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from eventsourcing.persistence import StoredEvent
from support import wait_for

from itertrack.adapters.store.group_commit import GroupCommit
from itertrack.domain.model.errors import StoreUnavailableError
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.service.store_ports import VersionTakenError

DEADLINE_S = 30


def rows(*versions: int) -> list[StoredEvent]:
    return [StoredEvent(originator_id="i", originator_version=v, topic="t", state=b"{}") for v in versions]


class FakeStore:
    """Commits as a store would: one transaction per call; a version listed in `taken` fails its transaction."""

    def __init__(self, taken: set[int] = frozenset(), down: bool = False) -> None:  # type: ignore[assignment]
        self.taken = set(taken)
        self.down = down
        self.transactions: list[list[int]] = []
        self.next_id = 0
        self.in_one = threading.Event()  # set while a lone commit is in flight
        self.release = threading.Event()
        self.release.set()

    def _commit(self, stored: Sequence[StoredEvent]) -> list[int]:
        if self.down:
            raise StoreUnavailableError("store is unavailable: connection refused")
        versions = [e.originator_version for e in stored]
        if self.taken & set(versions):
            raise VersionTakenError(f"versions {sorted(self.taken & set(versions))} taken")
        self.transactions.append(versions)
        ids = list(range(self.next_id + 1, self.next_id + 1 + len(stored)))
        self.next_id += len(stored)
        return ids

    def one(self, stored: Sequence[StoredEvent], record: IterationRecord | None) -> int | None:
        self.in_one.set()
        assert self.release.wait(DEADLINE_S)
        ids = self._commit(stored)
        return max(ids) if ids else None

    def many(self, stored: Sequence[StoredEvent], records: Sequence[IterationRecord]) -> Sequence[int]:
        return self._commit(stored)


def test_a_batch_appended_while_idle_is_one_transaction_and_each_change_gets_its_own_last_id() -> None:
    store = FakeStore()
    group = GroupCommit(store.one, store.many)
    outcomes = group.append_many([(rows(1), None), (rows(2, 3), None), (rows(4), None)])
    assert store.transactions == [[1, 2, 3, 4]]
    assert outcomes == [1, 3, 4]


def test_a_conflict_in_a_batch_fails_only_its_own_change_the_others_commit_alone() -> None:
    store = FakeStore(taken={2})
    group = GroupCommit(store.one, store.many)
    outcomes = group.append_many([(rows(1), None), (rows(2), None), (rows(3), None)])
    assert isinstance(outcomes[1], VersionTakenError)
    assert outcomes[0] == 1 and outcomes[2] == 2  # noqa: PT018
    assert store.transactions == [[1], [3]]  # the failed group, then each alone: only the conflict failed


def test_an_outage_gives_every_change_of_the_batch_its_own_copy_of_the_error() -> None:
    store = FakeStore(down=True)
    group = GroupCommit(store.one, store.many)
    outcomes = group.append_many([(rows(1), None), (rows(2), None)])
    assert all(isinstance(o, StoreUnavailableError) for o in outcomes)
    assert outcomes[0] is not outcomes[1]


def test_a_batch_queued_behind_a_commit_in_flight_shares_the_next_transaction_with_other_threads() -> None:
    """A lone commit is held in flight; another thread's change and a batch queue behind it: when it ends, the
    queued changes are written in one transaction."""
    store = FakeStore()
    store.release.clear()
    group = GroupCommit(store.one, store.many)
    results: dict[str, object] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", group.append(rows(1), None)))
    first.start()
    assert store.in_one.wait(DEADLINE_S)
    other = threading.Thread(target=lambda: results.setdefault("other", group.append(rows(2), None)))
    other.start()
    batch = threading.Thread(
        target=lambda: results.setdefault("batch", group.append_many([(rows(3), None), (rows(4), None)]))
    )
    batch.start()
    wait_for(lambda: group.waiting() == 3, DEADLINE_S, "the other thread's change and the batch's two to queue")
    store.release.set()
    for thread in (first, other, batch):
        thread.join(DEADLINE_S)
    assert store.transactions == [[1], [2, 3, 4]]
    assert results == {"first": 1, "other": 2, "batch": [3, 4]}
