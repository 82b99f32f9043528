"""Cost of LLM calls from the shipped price table, with every dollar computed by hand in the comments.

Rates are USD per million tokens, so a kind's cost is tokens x rate / 1,000,000.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from itertrack.domain.model.errors import InvalidInputError
from itertrack.projections.cost import (
    Cost,
    Priced,
    TokenCounts,
    Unpriced,
    anthropic_token_counts,
    price_call,
    sum_costs,
)
from itertrack.projections.pricing import PriceTable, price_table_of, shipped_price_table

TABLE = shipped_price_table()
DAY = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
# One usage with all five kinds; its prompt is 10,000 + 50,000 + 4,000 + 1,000 = 65,000 (under every tier).
ALL_KINDS = TokenCounts(input=10_000, output=2_000, cache_read=50_000, cache_write_5m=4_000, cache_write_1h=1_000)


def priced(
    model: str,
    tokens: TokenCounts = ALL_KINDS,
    table: PriceTable = TABLE,
    *,
    at: datetime | date = DAY,
    batch: bool = False,
    inference_geo: str | None = None,
) -> Priced:
    cost = price_call(
        table, provider="anthropic", model=model, at=at, tokens=tokens, batch=batch, inference_geo=inference_geo
    )
    assert isinstance(cost, Priced), cost
    return cost


def usd(text: str) -> Decimal:
    return Decimal(text)


# model id as the API reports it; the five kinds' dollars (input, output, cache read, write 5m, write 1h); total
FAMILIES = [
    # Fable 5.1: 10k x 10 = 0.10; 2k x 50 = 0.10; 50k x 0.25 = 0.0125; 4k x 12.50 = 0.05; 1k x 20 = 0.02
    ("claude-fable-5-1", ("0.10", "0.10", "0.0125", "0.05", "0.02"), "0.2825"),
    # Fable 5: 0.10; 0.10; 50k x 1.00 = 0.05; 0.05; 0.02
    ("claude-fable-5", ("0.10", "0.10", "0.05", "0.05", "0.02"), "0.32"),
    # Opus 5.5: 10k x 4 = 0.04; 2k x 20 = 0.04; 50k x 0.20 = 0.01; 4k x 5 = 0.02; 1k x 8 = 0.008
    ("claude-opus-5-5", ("0.04", "0.04", "0.01", "0.02", "0.008"), "0.118"),
    # Opus 5: 10k x 5 = 0.05; 2k x 25 = 0.05; 50k x 0.50 = 0.025; 4k x 6.25 = 0.025; 1k x 10 = 0.01
    ("claude-opus-5", ("0.05", "0.05", "0.025", "0.025", "0.01"), "0.16"),
    # Opus 4.5 (a dated snapshot id): the same rates as Opus 5
    ("claude-opus-4-5-20251101", ("0.05", "0.05", "0.025", "0.025", "0.01"), "0.16"),
    # Opus 4.1: 10k x 15 = 0.15; 2k x 75 = 0.15; 50k x 1.50 = 0.075; 4k x 18.75 = 0.075; 1k x 30 = 0.03
    ("claude-opus-4-1-20250805", ("0.15", "0.15", "0.075", "0.075", "0.03"), "0.48"),
    # Sonnet 5.5 after 2026-10-07: 10k x 2 = 0.02; 2k x 10 = 0.02; 50k x 0.10 = 0.005; 4k x 2.50 = 0.01; 1k x 4 = 0.004
    ("claude-sonnet-5-5", ("0.02", "0.02", "0.005", "0.01", "0.004"), "0.059"),
    # Sonnet 5: 0.02; 0.02; 50k x 0.20 = 0.01; 0.01; 0.004
    ("claude-sonnet-5", ("0.02", "0.02", "0.01", "0.01", "0.004"), "0.064"),
    # Sonnet 4.5: 10k x 3 = 0.03; 2k x 15 = 0.03; 50k x 0.30 = 0.015; 4k x 3.75 = 0.015; 1k x 6 = 0.006
    ("claude-sonnet-4-5-20250929", ("0.03", "0.03", "0.015", "0.015", "0.006"), "0.096"),
    ("claude-sonnet-4-5", ("0.03", "0.03", "0.015", "0.015", "0.006"), "0.096"),
    # Haiku 5.5 under its tier: 10k x 0.10 = 0.001; 2k x 0.50 = 0.001; 50k x 0.01 = 0.0005; 4k x 0.125 = 0.0005;
    # 1k x 0.20 = 0.0002
    ("claude-haiku-5-5", ("0.001", "0.001", "0.0005", "0.0005", "0.0002"), "0.0032"),
    # Haiku 4.5: 10k x 1 = 0.01; 2k x 5 = 0.01; 50k x 0.10 = 0.005; 4k x 1.25 = 0.005; 1k x 2 = 0.002
    ("claude-haiku-4-5-20251001", ("0.01", "0.01", "0.005", "0.005", "0.002"), "0.032"),
    # Sonnet 3.7: Sonnet 4.5's rates
    ("claude-3-7-sonnet-20250219", ("0.03", "0.03", "0.015", "0.015", "0.006"), "0.096"),
]


@pytest.mark.parametrize(("model", "kinds", "total"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_each_model_family_prices_all_five_token_kinds(model: str, kinds: tuple[str, ...], total: str) -> None:
    """Each kind at its own rate; the total is their sum, exact to the last digit."""
    cost = priced(model)
    assert tuple(cost.by_kind.values()) == tuple(usd(k) for k in kinds)
    assert cost.usd == usd(total)
    assert cost.table_version == TABLE.version
    assert cost.tier is None


def test_a_prompt_over_the_tier_prices_every_token_of_the_request_at_the_tier_output_included() -> None:
    """Haiku 5.5, prompt 60,000 + 40,000 cache reads + 1 cache write = 100,001 > 100,000: every kind at the tier."""
    tokens = TokenCounts(input=60_000, output=1_000, cache_read=40_000, cache_write_1h=1)
    cost = priced("claude-haiku-5-5", tokens)
    # 60,000 x 0.50 = 0.03; 1,000 x 2.50 = 0.0025 (output at the tier too); 40,000 x 0.05 = 0.002;
    # 1 x 1.00 = 0.000001; total 0.034501
    assert cost.by_kind == {
        "input": usd("0.03"),
        "output": usd("0.0025"),
        "cache_read": usd("0.002"),
        "cache_write_5m": 0,
        "cache_write_1h": usd("0.000001"),
    }
    assert cost.usd == usd("0.034501")
    assert cost.tier == 100_000


def test_a_prompt_of_exactly_the_threshold_stays_at_the_base_rates() -> None:
    """The tier is for prompts over 100,000; input alone (60,000) would be under it, the cache reads count too."""
    cost = priced("claude-haiku-5-5", TokenCounts(input=60_000, output=1_000, cache_read=40_000))
    # 60,000 x 0.10 = 0.006; 1,000 x 0.50 = 0.0005; 40,000 x 0.01 = 0.0004; total 0.0069
    assert cost.usd == usd("0.0069")
    assert cost.tier is None


def test_batch_halves_every_rate_cache_rates_too() -> None:
    """Sonnet 4.5 in the Batch API: 0.096 x 0.5 = 0.048; cache read 50k x 0.15 = 0.0075, write 1h 1k x 3 = 0.003."""
    cost = priced("claude-sonnet-4-5", batch=True)
    assert cost.usd == usd("0.048")
    assert cost.by_kind["cache_read"] == usd("0.0075")
    assert cost.by_kind["cache_write_1h"] == usd("0.003")
    assert cost.rates.cache_write_5m == usd("1.875")


def test_us_inference_multiplies_every_rate_by_1_1() -> None:
    """Sonnet 4.5 with inference_geo "us": 0.096 x 1.1 = 0.1056; output 2k x 16.5 = 0.033."""
    cost = priced("claude-sonnet-4-5", inference_geo="us")
    assert cost.usd == usd("0.1056")
    assert cost.by_kind["output"] == usd("0.033")


def test_batch_and_us_inference_multiply_together() -> None:
    """0.096 x 0.5 x 1.1 = 0.0528; the global default is x1 (0.096)."""
    assert priced("claude-sonnet-4-5", batch=True, inference_geo="us").usd == usd("0.0528")
    assert priced("claude-sonnet-4-5", inference_geo="global").usd == usd("0.096")


def test_an_inference_geo_the_table_does_not_know_is_unpriced_not_guessed() -> None:
    cost = price_call(
        TABLE, provider="anthropic", model="claude-sonnet-4-5", at=DAY, tokens=ALL_KINDS, inference_geo="eu"
    )
    assert isinstance(cost, Unpriced)
    assert "inference_geo 'eu'" in cost.reason


CACHE_READ_1M = TokenCounts(cache_read=1_000_000)


@pytest.mark.parametrize(
    ("at", "dollars"),
    [
        # 1,000,000 cache reads x 0.20 = 0.20 up to and including 2026-10-06 (UTC) ...
        (datetime(2026, 10, 6, 23, 59, 59, tzinfo=UTC), "0.20"),
        # ... and x 0.10 = 0.10 from 2026-10-07
        (datetime(2026, 10, 7, 0, 0, tzinfo=UTC), "0.10"),
        # 01:00 on the 7th at +02:00 is 23:00 on the 6th in UTC: the old rate
        (datetime(2026, 10, 7, 1, 0, tzinfo=timezone(timedelta(hours=2))), "0.20"),
        (date(2026, 10, 7), "0.10"),
        (datetime(2026, 9, 1, tzinfo=UTC), "0.20"),
    ],
)
def test_a_call_is_priced_at_the_rates_in_force_on_its_utc_date(at: datetime | date, dollars: str) -> None:
    """Sonnet 5.5's cache-read cut on 2026-10-07 applies to calls from that UTC date on, not before."""
    assert priced("claude-sonnet-5-5", CACHE_READ_1M, at=at).usd == usd(dollars)


def test_an_unknown_model_is_unpriced_with_its_tokens_never_zero_dollars() -> None:
    cost = price_call(TABLE, provider="anthropic", model="claude-sonnet-6", at=DAY, tokens=ALL_KINDS)
    assert isinstance(cost, Unpriced)
    assert cost.tokens == ALL_KINDS
    assert cost.tokens.total == 67_000
    assert "claude-sonnet-6" in cost.reason
    assert cost.table_version == TABLE.version


def test_an_unknown_snapshot_of_a_known_family_is_not_priced_by_a_neighbour() -> None:
    """`claude-opus-4-9` is no Opus 4 snapshot (`claude-opus-4-20??????`): unpriced, not $15/$75."""
    cost = price_call(TABLE, provider="anthropic", model="claude-opus-4-9", at=DAY, tokens=ALL_KINDS)
    assert isinstance(cost, Unpriced)


def test_a_cache_only_request_costs_its_cache_reads() -> None:
    """input_tokens=0, 20,000 cache reads on Haiku 4.5: 20,000 x 0.10 = 0.002."""
    tokens = anthropic_token_counts(input_tokens=0, output_tokens=0, cache_read_input_tokens=20_000)
    assert priced("claude-haiku-4-5", tokens).usd == usd("0.002")


def test_the_sum_keeps_priced_and_unpriced_apart() -> None:
    """0.096 + 0.0032 priced = 0.0992; the unknown model's 67,000 tokens (twice) listed, not added as $0."""
    costs: list[Cost] = [
        priced("claude-sonnet-4-5"),
        priced("claude-haiku-5-5"),
        price_call(TABLE, provider="anthropic", model="claude-next", at=DAY, tokens=ALL_KINDS),
        price_call(TABLE, provider="anthropic", model="claude-next", at=DAY, tokens=ALL_KINDS),
    ]
    total = sum_costs(costs, table_version=TABLE.version)
    assert total.usd == usd("0.0992")
    assert total.priced_calls == 2
    assert not total.complete
    [unpriced] = total.unpriced
    assert (unpriced.model, unpriced.calls, unpriced.tokens.total) == ("claude-next", 2, 134_000)
    assert total.unpriced_tokens.total == 134_000
    assert (total + total).usd == usd("0.1984")
    assert (total + total).unpriced[0].calls == 4
    assert total.by_kind["input"] == usd("0.031")  # 0.03 + 0.001


def test_costs_of_two_table_versions_are_not_summed() -> None:
    other = price_table_of({**TABLE.data.model_dump(), "version": "other"}, source="test")
    with pytest.raises(InvalidInputError, match="table_version"):
        sum_costs([priced("claude-sonnet-4-5"), priced("claude-sonnet-4-5", table=other)], table_version=TABLE.version)


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"at=.*timezone-aware"):
        price_call(TABLE, provider="anthropic", model="claude-sonnet-4-5", at=datetime(2026, 1, 1), tokens=ALL_KINDS)


def test_without_a_split_every_cache_write_is_a_five_minute_write() -> None:
    assert anthropic_token_counts(input_tokens=1, output_tokens=2, cache_creation_input_tokens=10_000) == TokenCounts(
        input=1, output=2, cache_write_5m=10_000
    )


def test_a_split_that_does_not_add_up_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="cache_creation_input_tokens=10000"):
        anthropic_token_counts(
            input_tokens=1,
            output_tokens=2,
            cache_creation_input_tokens=10_000,
            ephemeral_5m_input_tokens=1,
            ephemeral_1h_input_tokens=2,
        )


def test_a_negative_count_is_refused_naming_its_kind() -> None:
    with pytest.raises(InvalidInputError, match=r"tokens\.output=-1"):
        TokenCounts(output=-1)


# The known ways other trackers get cost wrong, each as a regression test.


def test_regression_cache_tokens_counted_twice_inside_input() -> None:
    """Anthropic's input_tokens excludes the cache: 1,000 input + 9,000 cache reads on Sonnet 4.5 cost
    1,000 x 3 + 9,000 x 0.30 = 0.003 + 0.0027 = 0.0057, not (1,000 + 9,000) x 3 + 9,000 x 0.30 = 0.0327."""
    tokens = anthropic_token_counts(input_tokens=1_000, output_tokens=0, cache_read_input_tokens=9_000)
    assert tokens.input == 1_000
    assert priced("claude-sonnet-4-5", tokens).usd == usd("0.0057")


def test_regression_cache_tokens_dropped_or_priced_as_plain_input() -> None:
    """The same call: cache reads at 0.30, not dropped (0.003) nor at the input rate (10,000 x 3 = 0.03);
    cache writes at 3.75: 2,000 x 3.75 = 0.0075."""
    tokens = anthropic_token_counts(
        input_tokens=1_000, output_tokens=0, cache_read_input_tokens=9_000, cache_creation_input_tokens=2_000
    )
    cost = priced("claude-sonnet-4-5", tokens)
    assert cost.by_kind["cache_read"] == usd("0.0027")
    assert cost.by_kind["cache_write_5m"] == usd("0.0075")
    # 0.003 + 0.0027 + 0.0075
    assert cost.usd == usd("0.0132")


def test_regression_the_one_hour_cache_write_rate_ignored() -> None:
    """10,000 one-hour cache writes on Sonnet 4.5: 10,000 x 6 = 0.06, not the 5-minute 10,000 x 3.75 = 0.0375."""
    tokens = anthropic_token_counts(
        input_tokens=0,
        output_tokens=0,
        cache_creation_input_tokens=10_000,
        ephemeral_5m_input_tokens=0,
        ephemeral_1h_input_tokens=10_000,
    )
    assert priced("claude-sonnet-4-5", tokens).usd == usd("0.06")


def test_regression_cache_only_requests_priced_at_zero() -> None:
    """input 0, output 0, 1,000,000 cache reads on Opus 4.1: 1,000,000 x 1.50 = 1.50, not $0."""
    cost = priced(
        "claude-opus-4-1", anthropic_token_counts(input_tokens=0, output_tokens=0, cache_read_input_tokens=10**6)
    )
    assert cost.usd == usd("1.50")


def test_regression_new_models_priced_at_zero_without_a_word() -> None:
    """A model newer than the table is Unpriced with a reason; a sum shows no dollars for it and says so."""
    cost = price_call(TABLE, provider="anthropic", model="claude-opus-6", at=DAY, tokens=ALL_KINDS)
    assert isinstance(cost, Unpriced)
    assert not hasattr(cost, "usd")
    total = sum_costs([cost], table_version=TABLE.version)
    assert total.priced_calls == 0
    assert not total.complete
    assert total.unpriced[0].reason == "no price for model 'claude-opus-6' of provider 'anthropic' in the table"


def test_regression_cost_frozen_at_ingestion() -> None:
    """The same usage priced by a changed table costs what the new table says, under the new version:
    Sonnet 4.5's cache read 0.30 -> 0.15 makes 0.096 - 50,000 x 0.15 = 0.0885."""
    data = TABLE.data.model_dump()
    for row in data["prices"]:
        if "claude-sonnet-4-5" in row["models"]:
            row["cache_read"] = Decimal("0.15")
    changed = price_table_of(data, source="test")
    before, after = priced("claude-sonnet-4-5"), priced("claude-sonnet-4-5", table=changed)
    assert (before.usd, after.usd) == (usd("0.096"), usd("0.0885"))
    assert before.table_version != after.table_version


def test_sums_stay_exact_past_the_default_28_digits() -> None:
    """A billion calls' worth of dollars plus one millionth of a cent keeps both ends (29+ significant digits)."""
    big = priced("claude-opus-4-1", TokenCounts(output=10**30))  # 10^30 x 75 / 10^6 = 7.5e25 dollars
    small = priced("claude-haiku-5-5", TokenCounts(input=1))  # 1 x 0.10 / 10^6 = 0.0000001
    total = sum_costs([big, small], table_version=TABLE.version)
    assert total.usd == Decimal("75000000000000000000000000.0000001")
    assert (total + total).usd == Decimal("150000000000000000000000000.0000002")
