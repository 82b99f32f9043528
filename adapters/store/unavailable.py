"""The store stopped answering: the library's connection errors as the tracker's `StoreUnavailableError`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from eventsourcing.persistence import InterfaceError, OperationalError

from itertrack.domain.model.errors import StoreUnavailableError


@contextmanager
def store_unavailable_as_typed_error() -> Iterator[None]:
    """The store stopped answering mid-run: raise `StoreUnavailableError` from the library's error."""
    try:
        yield
    except (OperationalError, InterfaceError) as e:
        raise StoreUnavailableError(f"store is unavailable: {str(e).strip() or type(e).__name__}") from e
