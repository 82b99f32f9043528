"""The price table in force from a user's file (ITERTRACK_PRICES), and the LLM calls a real store holds."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from eventsourcing.utils import get_topic
from pydantic import BaseModel, ConfigDict

from itertrack.adapters import prices
from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.prices import load_price_table, models_in_store
from itertrack.domain.model.errors import PriceTableError
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.projections.cost import Priced, TokenCounts, price_call
from itertrack.projections.pricing import shipped_price_table

SHIPPED = shipped_price_table()


def shipped_as_json() -> dict[str, object]:
    data: dict[str, object] = SHIPPED.data.model_dump(mode="json", exclude_none=True)
    return data


def test_without_the_setting_the_shipped_table_is_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ITERTRACK_PRICES", raising=False)
    assert load_price_table() is SHIPPED
    assert load_price_table({"ITERTRACK_PRICES": ""}) is SHIPPED  # blank means the default


def test_a_user_file_replaces_the_table_and_reprices_the_same_usage(tmp_path: Path) -> None:
    """Sonnet 4.5's cache read 0.30 -> 0.15 in the user's file: 1,000,000 cache reads cost 0.30, then 0.15."""
    data = shipped_as_json()
    for row in data["prices"]:  # type: ignore[attr-defined]
        if "claude-sonnet-4-5" in row["models"]:
            row["cache_read"] = "0.15"
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data))
    user = load_price_table({"ITERTRACK_PRICES": str(path)})
    assert user.source == str(path)
    assert user.version.split("+")[0] == SHIPPED.version.split("+")[0]
    assert user.version != SHIPPED.version
    tokens = TokenCounts(cache_read=1_000_000)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    costs = [
        price_call(t, provider="anthropic", model="claude-sonnet-4-5", at=at, tokens=tokens) for t in (SHIPPED, user)
    ]
    assert [c.usd for c in costs if isinstance(c, Priced)] == [Decimal("0.30"), Decimal("0.15")]
    assert [c.table_version for c in costs] == [SHIPPED.version, user.version]


def test_the_shipped_table_written_as_json_reads_back_as_the_same_version(tmp_path: Path) -> None:
    path = tmp_path / "copy.json"
    path.write_text(json.dumps(shipped_as_json()))
    assert load_price_table({"ITERTRACK_PRICES": str(path)}).version == SHIPPED.version


def test_a_user_file_with_a_bad_row_is_a_typed_error_naming_the_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        'version = "mine"\n'
        '[[prices]]\nprovider = "anthropic"\nmodels = ["claude-a"]\neffective_from = 2026-01-01\n'
        'input = "1"\noutput = "5"\ncache_read = "0.1"\ncache_write_5m = "1.25"\ncache_write_1h = "2"\n'
        '[[prices]]\nprovider = "anthropic"\nmodels = ["claude-b"]\neffective_from = 2026-01-01\n'
        'input = "1"\noutput = "five"\ncache_read = "0.1"\ncache_write_5m = "1.25"\ncache_write_1h = "2"\n'
    )
    with pytest.raises(PriceTableError) as caught:
        load_price_table({"ITERTRACK_PRICES": str(path)})
    assert (caught.value.row, caught.value.model, caught.value.field, caught.value.value) == (
        1,
        "claude-b",
        "output",
        "five",
    )
    assert str(caught.value).startswith(f"price table {path}, row prices[1] (model 'claude-b'): output='five': ")


def test_a_missing_file_is_a_typed_error_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(PriceTableError, match=r"ITERTRACK_PRICES=.*nope\.toml.*cannot be read"):
        load_price_table({"ITERTRACK_PRICES": str(tmp_path / "nope.toml")})


class FakeLLMCall(BaseModel):
    """An event shaped as an LLM call's (provider, model, timestamp), stored under a topic of its own."""

    model_config = ConfigDict(frozen=True)

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    provider: str
    model: str


def test_a_store_without_llm_call_events_holds_no_models(
    sqlite_store: str, open_tracker: Callable[..., PerformanceTracker]
) -> None:
    """Tokens added as metrics only (no LLM call recorded): nothing to price."""
    tracker = open_tracker(sqlite_store)
    iteration_id = tracker.start_iteration(agent_id="a", iteration_number=1)
    tracker.update_metrics(iteration_id, {"analysis_tokens": 15})
    assert models_in_store(tracker) == []


def test_calls_of_named_and_unnamed_models_are_listed_for_the_check(
    sqlite_store: str, open_tracker: Callable[..., PerformanceTracker]
) -> None:
    """A call whose response named no model is listed as model "" (it cannot be priced), beside named ones."""
    tracker = open_tracker(sqlite_store)
    iteration_id = tracker.start_iteration(agent_id="a", iteration_number=1)
    tracker.record_usage(iteration_id, "analysis", {"input_tokens": 10, "output_tokens": 5})
    tracker.record_llm_call(iteration_id, "analysis", model="claude-haiku-4-5", usage={"input_tokens": 1})
    day = tracker.get_iteration(iteration_id).updated_at.astimezone(UTC).date()
    assert models_in_store(tracker) == [("anthropic", "", day), ("anthropic", "claude-haiku-4-5", day)]


def test_models_in_store_reads_each_distinct_provider_model_and_utc_day(
    sqlite_store: str, open_tracker: Callable[..., PerformanceTracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events of the LLM-call topic (here a stand-in class's) are read through the event store, once."""
    monkeypatch.setattr(prices, "LLM_CALL_TOPIC", get_topic(FakeLLMCall))
    monkeypatch.setattr(prices, "PAGE", 2)  # several pages
    tracker = open_tracker(sqlite_store)
    tracker.start_iteration(agent_id="a", iteration_number=1)  # an event of another topic, skipped
    store = store_of(tracker)
    calls = [
        ("anthropic", "claude-sonnet-4-5", datetime(2026, 10, 6, 23, 0, tzinfo=UTC)),
        ("anthropic", "claude-sonnet-4-5", datetime(2026, 10, 6, 23, 30, tzinfo=UTC)),
        ("anthropic", "claude-sonnet-4-5", datetime(2026, 10, 7, 0, 30, tzinfo=UTC)),
        ("anthropic", "claude-next", datetime(2026, 11, 1, tzinfo=UTC)),
    ]
    originator = uuid4()
    events = [
        FakeLLMCall(originator_id=originator, originator_version=v, timestamp=at, provider=p, model=m)
        for v, (p, m, at) in enumerate(calls, start=1)
    ]
    store.recorder.insert_events([store.mapper.to_stored_event(e) for e in events])
    assert models_in_store(tracker) == [
        ("anthropic", "claude-next", date(2026, 11, 1)),
        ("anthropic", "claude-sonnet-4-5", date(2026, 10, 6)),
        ("anthropic", "claude-sonnet-4-5", date(2026, 10, 7)),
    ]
