"""Iteration ids as an operator types them: a full UUID, or a unique hex prefix of one (`4a18`, `4a1840ab-4c27`)."""

from __future__ import annotations

from uuid import UUID

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import ReadModels, view_for
from itertrack.domain.model.errors import InvalidIterationIdError, IterationNotFoundError, StorePermissionError
from itertrack.domain.model.text import parse_iteration_id
from itertrack.domain.service.tracker import PerformanceTracker

# The shortest prefix accepted (shorter ones would match too many iterations to be of use).
MIN_PREFIX = 4
# How many of the iterations an ambiguous prefix matches its error names.
SHOWN_MATCHES = 5
_HEX = frozenset("0123456789abcdef")


def resolve_iteration_id(tracker: PerformanceTracker, text: str, field: str = "iteration_id") -> UUID:
    """The iteration id `text` names: a UUID as written, or the one iteration whose id starts with `text`.

    A prefix is at least `MIN_PREFIX` hex digits, with or without dashes, in any case; it is looked up in the read
    models (caught up first when nothing there matches, so a just-started iteration is found). Raises
    `InvalidIterationIdError` naming `field` for text that is neither a UUID nor such a prefix, or a prefix of
    more than one iteration (the error lists up to `SHOWN_MATCHES` of them); `IterationNotFoundError` when no
    iteration's id starts with it; `StoreError` from the store.
    """
    try:
        return parse_iteration_id(text, field)
    except InvalidIterationIdError:
        prefix = text.strip().replace("-", "").lower()
        if len(prefix) < MIN_PREFIX or not set(prefix) <= _HEX or len(prefix) >= 32:
            raise InvalidIterationIdError(
                field, text, f"must be a UUID or a unique prefix of one (at least {MIN_PREFIX} hex digits)"
            ) from None
    view = view_for(store_of(tracker).factory)
    found = view.ids_with_prefix(prefix, limit=SHOWN_MATCHES + 1)
    if not found:
        try:
            with ReadModels(tracker, background=False) as views:
                views.sync()
        except StorePermissionError:
            pass  # a read-only role reads the views as they are
        found = view.ids_with_prefix(prefix, limit=SHOWN_MATCHES + 1)
    if not found:
        raise IterationNotFoundError(text)
    if len(found) > 1:
        listed = ", ".join(str(i) for i in found[:SHOWN_MATCHES])
        more = ", ..." if len(found) > SHOWN_MATCHES else ""
        raise InvalidIterationIdError(field, text, f"is the prefix of more than one iteration: {listed}{more}")
    return found[0]
