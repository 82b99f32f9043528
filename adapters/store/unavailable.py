"""The store failed mid-run: the library's and the driver's errors as the tracker's typed errors.

An outage (the store away, a lock or statement timeout) is `StoreUnavailableError`, which a spooling
writer answers by spooling; a failure waiting cannot fix is `StoreConfigError` (`StorePermissionError`
for a missing privilege), which is never spooled. postgres_failures.py decides which is which. A
connection that failed after an insert's COMMIT was sent is `OutcomeUnknownError` (a `StoreUnavailableError`):
the change may have landed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError

from itertrack.adapters.store.postgres_failures import Failure, failure_of, server_reason
from itertrack.domain.model.errors import (
    OutcomeUnknownError,
    StoreConfigError,
    StoreError,
    StorePermissionError,
    StoreUnavailableError,
)

CANNOT_WAIT = "waiting cannot fix this; nothing was written or spooled"


class CommitOutcomeUnknown(OperationalError):  # noqa: N818  # the library's error names, not ours
    """A recorder's insert lost its connection after the transaction's COMMIT was sent: it may have landed."""


def commit_may_have_landed(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from or while handling (a retry's), is `CommitOutcomeUnknown`."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, CommitOutcomeUnknown):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


@contextmanager
def store_unavailable_as_typed_error(shown: str = "the store") -> Iterator[None]:
    """Raise the typed error for a store failure, from the original (`shown` names the store, redacted).

    `StoreUnavailableError` for an outage (`OutcomeUnknownError` if a commit of this call had been sent when
    the connection failed), `StorePermissionError` when the role lacks a privilege, `StoreConfigError` for
    another failure waiting cannot fix; other errors pass unchanged.
    """
    try:
        yield
    except StoreError:
        raise
    except (PersistenceError, psycopg.Error) as e:
        if commit_may_have_landed(e):
            raise OutcomeUnknownError(server_reason(e)) from e
        failure = failure_of(e)
        if failure is None and isinstance(e, OperationalError | InterfaceError | psycopg.OperationalError):
            failure = Failure.OUTAGE  # a connection failure the driver gave no code for (SQLite's too)
        if failure is Failure.OUTAGE:
            raise StoreUnavailableError(f"store is unavailable: {server_reason(e)}") from e
        if failure is Failure.PERMISSION:
            raise StorePermissionError("store", shown, f"the server refused: {server_reason(e)}; {CANNOT_WAIT}") from e
        if failure is Failure.CONFIG:
            raise StoreConfigError("store", shown, f"the server refused: {server_reason(e)}; {CANNOT_WAIT}") from e
        raise
