"""The price table: which row prices a model on a date, and typed errors naming the row and field of a bad table."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from itertrack.domain.model.errors import InvalidInputError, PriceTableError
from itertrack.projections.pricing import (
    NoPrice,
    RowMatch,
    parse_price_table,
    price_table_of,
    shipped_price_table,
    unpriced_models,
)

RATES = {"input": "1", "output": "2", "cache_read": "0.1", "cache_write_5m": "1.25", "cache_write_1h": "2"}


def row(models: list[str], effective_from: str = "2026-01-01", provider: str = "acme", **rates: Any) -> dict[str, Any]:
    return {"provider": provider, "models": models, "effective_from": effective_from, **RATES, **rates}


def table(*rows: dict[str, Any], **extra: Any) -> Any:
    return price_table_of({"version": "t1", "prices": list(rows), **extra}, source="test")


def priced_by(t: Any, model: str, on: date = date(2026, 6, 1)) -> int:
    match = t.lookup("acme", model, on)
    assert isinstance(match, RowMatch), match
    return int(match.index)


def test_an_exact_id_beats_a_pattern_whatever_their_order() -> None:
    t = table(row(["m-1"]), row(["m-*"], effective_from="2026-05-01"))
    assert priced_by(t, "m-1") == 0
    assert priced_by(t, "m-2") == 1


def test_the_pattern_with_more_literal_characters_wins() -> None:
    t = table(row(["m-*"]), row(["m-1-*"]), row(["m-1-2???"]))
    assert priced_by(t, "m-1-2024") == 2
    assert priced_by(t, "m-1-x") == 1
    assert priced_by(t, "m-9") == 0


def test_the_latest_row_in_force_on_the_date_wins_and_later_rows_wait() -> None:
    t = table(row(["m"]), row(["m"], effective_from="2026-10-07", cache_read="0.05"))
    assert priced_by(t, "m", date(2026, 10, 6)) == 0
    assert priced_by(t, "m", date(2026, 10, 7)) == 1
    found = t.lookup("acme", "m", date(2025, 12, 31))
    assert isinstance(found, NoPrice)
    assert "no price in force on 2025-12-31" in found.reason


def test_a_more_specific_row_not_yet_in_force_falls_back_to_the_general_one() -> None:
    t = table(row(["m-*"]), row(["m-1"], effective_from="2026-07-01"))
    assert priced_by(t, "m-1", date(2026, 6, 30)) == 0
    assert priced_by(t, "m-1", date(2026, 7, 1)) == 1


def test_providers_are_matched_case_insensitively_and_never_across() -> None:
    t = table(row(["m"]))
    assert isinstance(t.lookup("ACME", "m", date(2026, 6, 1)), RowMatch)
    assert isinstance(t.lookup("other", "m", date(2026, 6, 1)), NoPrice)


def test_the_shipped_table_prices_the_api_s_model_ids() -> None:
    shipped = shipped_price_table()
    for model in (
        "claude-opus-4-1-20250805",
        "claude-opus-4-1",
        "claude-opus-4-20250514",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-20250514",
        "claude-haiku-4-5-20251001",
        "claude-3-7-sonnet-20250219",
        "claude-sonnet-5-5",
        "claude-haiku-5-5",
        "claude-opus-5-5",
        "claude-fable-5-1",
    ):
        assert isinstance(shipped.lookup("anthropic", model, date(2026, 11, 1)), RowMatch), model
    assert shipped.source == "shipped"
    assert shipped.version.startswith("2026-11-29+")


def test_the_version_changes_with_the_rates_even_under_the_same_declared_version() -> None:
    assert table(row(["m"])).version != table(row(["m"], cache_read="0.2")).version
    assert table(row(["m"])).version == table(row(["m"])).version


def test_rates_are_exact_decimals_from_toml_and_json() -> None:
    toml = parse_price_table(
        'version = "v"\n[[prices]]\nprovider = "acme"\nmodels = ["m"]\neffective_from = 2026-01-01\n'
        "input = 0.1\noutput = 0.3\ncache_read = 0.01\ncache_write_5m = 0.125\ncache_write_1h = 0.2\n",
        fmt="toml",
        source="t.toml",
    )
    assert toml.data.prices[0].input == Decimal("0.1")
    as_json = parse_price_table(
        '{"version": "v", "prices": [{"provider": "acme", "models": ["m"], "effective_from": "2026-01-01",'
        ' "input": 0.1, "output": 0.3, "cache_read": 0.01, "cache_write_5m": 0.125, "cache_write_1h": 0.2}]}',
        fmt="json",
        source="t.json",
    )
    assert as_json.data.prices[0].input == Decimal("0.1")
    assert as_json.data == toml.data


def test_a_bad_rate_names_the_row_its_model_the_field_and_the_value() -> None:
    with pytest.raises(PriceTableError) as caught:
        table(row(["m-1"]), row(["m-2"], cache_read="-0.1"))
    error = caught.value
    assert (error.source, error.row, error.model, error.field, error.value) == ("test", 1, "m-2", "cache_read", "-0.1")
    assert str(error).startswith("price table test, row prices[1] (model 'm-2'): cache_read='-0.1': ")
    assert isinstance(error, InvalidInputError)


def test_every_rate_must_be_given_none_is_derived() -> None:
    bad = row(["m"])
    del bad["cache_write_1h"]
    with pytest.raises(PriceTableError, match=r"row prices\[0\] \(model 'm'\): cache_write_1h=.*Field required"):
        table(bad)


def test_a_misspelt_field_is_refused_not_ignored() -> None:
    with pytest.raises(PriceTableError, match=r"prices\[0\] \(model 'm'\): cache_wrte_1h='3'"):
        table(row(["m"], cache_wrte_1h="3"))


def test_a_bad_tier_is_named_by_its_path_inside_the_row() -> None:
    tier = {"above_prompt_tokens": 0, **RATES}
    with pytest.raises(PriceTableError, match=r"prices\[0\] \(model 'm'\): tiers\[0\]\.above_prompt_tokens=0"):
        table(row(["m"], tiers=[tier]))
    tiers = [{**RATES, "above_prompt_tokens": 200}, {**RATES, "above_prompt_tokens": 100}]
    with pytest.raises(PriceTableError, match=r"prices\[0\] .*tiers=.*ascending"):
        table(row(["m"], tiers=tiers))


def test_the_same_model_twice_from_the_same_date_is_ambiguous() -> None:
    with pytest.raises(PriceTableError, match=r"row prices\[2\] \(model 'm'\): models='m'.*prices\[0\]"):
        table(row(["m"]), row(["n"]), row(["x", "m"]))


def test_a_bad_date_and_a_bad_multiplier_are_named() -> None:
    with pytest.raises(PriceTableError, match=r"prices\[0\] \(model 'm'\): effective_from='soon'"):
        table(row(["m"], effective_from="soon"))
    with pytest.raises(PriceTableError, match=r"multipliers\[0\]\.batch='0'"):
        table(row(["m"]), multipliers=[{"provider": "acme", "batch": "0"}])


def test_a_file_that_is_not_toml_is_named() -> None:
    with pytest.raises(PriceTableError, match=r"price table my\.toml: file=.*is not valid TOML"):
        parse_price_table("version = ", fmt="toml", source="my.toml")


def test_unpriced_models_groups_the_calls_without_a_price() -> None:
    t = table(row(["m"], effective_from="2026-03-01"))
    calls = [
        ("acme", "m", date(2026, 3, 1)),
        ("acme", "m", date(2026, 2, 1)),
        ("acme", "new", date(2026, 4, 1)),
        ("acme", "new", date(2026, 4, 3)),
    ]
    found = unpriced_models(t, calls)
    assert [(u.model, u.first, u.last, u.calls) for u in found] == [
        ("m", date(2026, 2, 1), date(2026, 2, 1), 1),
        ("new", date(2026, 4, 1), date(2026, 4, 3), 2),
    ]
    assert unpriced_models(t, []) == []
