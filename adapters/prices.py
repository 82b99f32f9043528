"""The price table in force (the shipped one, or the file `ITERTRACK_PRICES` names) and the models a store holds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date
from pathlib import Path
from typing import cast

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.settings import env_name, load_settings
from itertrack.domain.model.errors import PriceTableError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.projections.pricing import PriceTable, parse_price_table, shipped_price_table

# The stored topic of one LLM call's event (`Iteration.LLMCallRecorded`), read for `provider`, `model`, `timestamp`.
LLM_CALL_TOPIC = "itertrack.domain.model.iteration:Iteration.LLMCallRecorded"
PAGE = 10_000


def load_price_table(overrides: Mapping[str, str] | None = None) -> PriceTable:
    """The table in force: the file `ITERTRACK_PRICES` names (TOML, or JSON when it ends in `.json`), which
    replaces the shipped table whole, else the shipped one.

    `overrides` as for `load_settings` (`{"ITERTRACK_PRICES": path}` wins over the environment). Raises
    `PriceTableError` when the file cannot be read (naming `ITERTRACK_PRICES` and the path) or breaks a rule
    (naming the row, its model, the field and the value); `StoreConfigError` for a malformed setting.
    """
    path_text = load_settings(overrides).prices
    if path_text is None:
        return shipped_price_table()
    path = Path(path_text).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise PriceTableError(str(path), env_name("prices"), path_text, f"cannot be read: {reason}") from None
    if path.suffix.lower() == ".json":
        return parse_price_table(text, fmt="json", source=str(path))
    return parse_price_table(text, fmt="toml", source=str(path))


def models_in_store(tracker: PerformanceTracker) -> list[tuple[str, str, date]]:
    """Each distinct (provider, model, UTC date) of the LLM calls recorded in the tracker's store, sorted.

    Reads the store's events of topic `LLM_CALL_TOPIC` once, through the tracker's event store (its
    notification log). A store without such events (every store written before LLM calls were recorded as
    events) gives an empty list.
    """
    store = store_of(tracker)
    found: set[tuple[str, str, date]] = set()
    start = 0
    while True:
        page = store.recorder.select_notifications(
            start=start, limit=PAGE, topics=[LLM_CALL_TOPIC], inclusive_of_start=False
        )
        for notification in page:
            event = cast(Iteration.Event, store.mapper.to_domain_event(notification))
            # A response that named no model is listed as model "": the table cannot price it either.
            provider, model = str(getattr(event, "provider", "")), str(getattr(event, "model", None) or "")
            found.add((provider, model, event.timestamp.astimezone(UTC).date()))
        if len(page) < PAGE:
            break
        start = page[-1].id
    return sorted(found)
