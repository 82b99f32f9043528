"""Cost of LLM calls, computed at read time from token counts and a price table: exact USD as `Decimal`.

A call's cost is, for each token kind, tokens x the rate in force on the call's UTC date (the tier its prompt
reaches, times the batch and regional multipliers) / 1,000,000. Nothing here is stored: price the same usage
with another table and the cost follows. A call the table cannot price is `Unpriced` (with its tokens and the
reason), never $0; sums keep the two apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Context, Decimal
from typing import Any

from itertrack.domain.model.errors import InvalidInputError
from itertrack.projections.pricing import PER_TOKENS, TOKEN_KINDS, NoPrice, PriceTable, Rates, TokenKind

# Enough digits that no product of a token count, a rate and multipliers is ever rounded.
_EXACT = Context(prec=60)
ZERO = Decimal(0)


def _sum(values: Iterable[Decimal]) -> Decimal:
    total = ZERO
    for value in values:
        total = _EXACT.add(total, value)
    return total


@dataclass(frozen=True)
class TokenCounts:
    """A call's tokens by kind, as billed: `input` excludes cache reads and writes (Anthropic's `input_tokens`);
    `cache_write_5m` and `cache_write_1h` are the two cache-write durations. Non-negative ints."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0

    def __post_init__(self) -> None:
        for kind in TOKEN_KINDS:
            value = getattr(self, kind)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInputError(f"tokens.{kind}", value, "must be a non-negative int")

    def of(self, kind: TokenKind) -> int:
        """The count of one kind."""
        count: int = getattr(self, kind)
        return count

    @property
    def prompt(self) -> int:
        """The request's prompt size, as tiers count it: input + cache reads + cache writes (both durations)."""
        return self.input + self.cache_read + self.cache_write_5m + self.cache_write_1h

    @property
    def total(self) -> int:
        """Every token of the call, each counted once."""
        return self.prompt + self.output

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(**{kind: self.of(kind) + other.of(kind) for kind in TOKEN_KINDS})


def anthropic_token_counts(
    *,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_input_tokens: int | None = None,
    cache_creation_input_tokens: int | None = None,
    ephemeral_5m_input_tokens: int | None = None,
    ephemeral_1h_input_tokens: int | None = None,
) -> TokenCounts:
    """The billed token kinds of a Claude response's `usage` (None counts as 0).

    `input_tokens` already excludes cache reads and writes, so it is taken as is (never minus the cache).
    The 5-minute / 1-hour split of cache writes comes from `usage.cache_creation.ephemeral_5m_input_tokens` and
    `ephemeral_1h_input_tokens`; without it every cache write is a 5-minute write. Raises `InvalidInputError`
    naming the field when a count is negative or not an int, or when the split does not add up to
    `cache_creation_input_tokens`.
    """
    creation = cache_creation_input_tokens or 0
    if ephemeral_5m_input_tokens is None and ephemeral_1h_input_tokens is None:
        five, hour = creation, 0
    else:
        five, hour = ephemeral_5m_input_tokens or 0, ephemeral_1h_input_tokens or 0
        if cache_creation_input_tokens is not None and five + hour != creation:
            raise InvalidInputError(
                "cache_creation_input_tokens",
                creation,
                f"differs from its 5m + 1h split ({five} + {hour})",
            )
    return TokenCounts(
        input=input_tokens or 0,
        output=output_tokens or 0,
        cache_read=cache_read_input_tokens or 0,
        cache_write_5m=five,
        cache_write_1h=hour,
    )


@dataclass(frozen=True)
class Priced:
    """A priced call: `usd` (exact) = the sum of `by_kind`; the rates applied (per million tokens, multipliers
    included), the table row (`row`, its index) and tier (`tier`: the threshold crossed, None for base rates)
    that gave them, and the version of the table."""

    provider: str
    model: str
    day: date
    tokens: TokenCounts
    usd: Decimal
    by_kind: Mapping[TokenKind, Decimal]
    rates: Rates
    multiplier: Decimal
    row: int
    tier: int | None
    table_version: str


@dataclass(frozen=True)
class Unpriced:
    """A call the table cannot price: its tokens and why (no row for the model, none in force on its date, a
    batch or `inference_geo` the table has no multiplier for). Never counted as $0."""

    provider: str
    model: str
    day: date
    tokens: TokenCounts
    reason: str
    table_version: str


Cost = Priced | Unpriced


def call_day(at: datetime | date) -> date:
    """The UTC date that decides which rates are in force (`InvalidInputError` for a naive datetime)."""
    if isinstance(at, datetime):
        offset = at.utcoffset()
        if offset is None:
            raise InvalidInputError("at", at, "must be timezone-aware (the UTC date decides the price)")
        return (at - offset).date()
    return at


def price_call(
    table: PriceTable,
    *,
    provider: str,
    model: str,
    at: datetime | date,
    tokens: TokenCounts,
    batch: bool = False,
    inference_geo: str | None = None,
) -> Cost:
    """The cost of one call: `Priced` (exact USD per token kind) or `Unpriced` (with the reason), never $0 for
    want of a price.

    `at`: the call's time (timezone-aware) or UTC date; the row in force on that UTC date applies. The tier is
    chosen by `tokens.prompt` and applies to every token, output included. `batch` multiplies by the provider's
    batch multiplier, `inference_geo` (as the response reports it; None means the default, global) by its
    regional one. Raises `InvalidInputError` for a naive datetime.
    """
    day = call_day(at)

    def unpriced(reason: str) -> Unpriced:
        return Unpriced(provider, model, day, tokens, reason, table.version)

    match = table.lookup(provider, model, day)
    if isinstance(match, NoPrice):
        return unpriced(match.reason)
    multipliers = table.multipliers_of(provider)
    multiplier = Decimal(1)
    if batch:
        if multipliers is None or multipliers.batch is None:
            return unpriced(f"no batch multiplier for provider {provider!r} in the table")
        multiplier = _EXACT.multiply(multiplier, multipliers.batch)
    if inference_geo is not None:
        geo = (multipliers.inference_geo if multipliers else {}).get(inference_geo)
        if geo is None:
            return unpriced(f"no multiplier for inference_geo {inference_geo!r} of provider {provider!r}")
        multiplier = _EXACT.multiply(multiplier, geo)
    base, tier = match.row.rates_for_prompt(tokens.prompt)
    rates = Rates(**{kind: _EXACT.multiply(base.of(kind), multiplier) for kind in TOKEN_KINDS})
    by_kind = {
        kind: _EXACT.divide(_EXACT.multiply(rates.of(kind), tokens.of(kind)), PER_TOKENS) for kind in TOKEN_KINDS
    }
    usd = _sum(by_kind.values())
    return Priced(
        provider=provider,
        model=model,
        day=day,
        tokens=tokens,
        usd=usd,
        by_kind=by_kind,
        rates=rates,
        multiplier=multiplier,
        row=match.index,
        tier=tier,
        table_version=table.version,
    )


@dataclass(frozen=True)
class UnpricedTotal:
    """Calls of one (provider, model) that could not be priced for one reason: how many, and their tokens."""

    provider: str
    model: str
    reason: str
    calls: int
    tokens: TokenCounts


@dataclass(frozen=True)
class CostTotal:
    """A sum of calls' costs that keeps priced and unpriced apart.

    `usd` and `by_kind` sum the priced calls only (`priced_calls`, `priced_tokens`); `unpriced` lists the rest
    per (provider, model, reason) with their tokens. `complete` is True when nothing was unpriced.
    """

    table_version: str
    usd: Decimal = ZERO
    by_kind: Mapping[TokenKind, Decimal] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, ZERO))
    priced_calls: int = 0
    priced_tokens: TokenCounts = TokenCounts()
    unpriced: tuple[UnpricedTotal, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every call summed had a price."""
        return not self.unpriced

    @property
    def unpriced_tokens(self) -> TokenCounts:
        """The tokens of the unpriced calls."""
        return sum((u.tokens for u in self.unpriced), TokenCounts())

    def add(self, cost: Cost) -> CostTotal:
        """This total with one more call (`InvalidInputError` when it was priced by another table version)."""
        return self + sum_costs([cost], table_version=cost.table_version)

    def __add__(self, other: CostTotal) -> CostTotal:
        if other.table_version != self.table_version:
            raise InvalidInputError(
                "table_version", other.table_version, f"cannot be summed with costs of version {self.table_version}"
            )
        merged: dict[tuple[str, str, str], UnpricedTotal] = {(u.provider, u.model, u.reason): u for u in self.unpriced}
        for u in other.unpriced:
            key = (u.provider, u.model, u.reason)
            prior = merged.get(key)
            merged[key] = u if prior is None else UnpricedTotal(*key, prior.calls + u.calls, prior.tokens + u.tokens)
        return CostTotal(
            table_version=self.table_version,
            usd=_EXACT.add(self.usd, other.usd),
            by_kind={k: _EXACT.add(self.by_kind[k], other.by_kind[k]) for k in TOKEN_KINDS},
            priced_calls=self.priced_calls + other.priced_calls,
            priced_tokens=self.priced_tokens + other.priced_tokens,
            unpriced=tuple(merged[k] for k in sorted(merged)),
        )


def sum_costs(costs: Iterable[Cost], *, table_version: str) -> CostTotal:
    """The total of calls priced by one table (`table_version`), priced and unpriced kept apart.

    Raises `InvalidInputError` naming `table_version` when a cost came from another version of the table.
    """
    usd = ZERO
    by_kind: dict[TokenKind, Decimal] = dict.fromkeys(TOKEN_KINDS, ZERO)
    priced_calls = 0
    priced_tokens = TokenCounts()
    unpriced: dict[tuple[str, str, str], UnpricedTotal] = {}
    for cost in costs:
        if cost.table_version != table_version:
            raise InvalidInputError(
                "table_version", cost.table_version, f"cannot be summed with costs of version {table_version}"
            )
        if isinstance(cost, Priced):
            usd = _EXACT.add(usd, cost.usd)
            for kind in TOKEN_KINDS:
                by_kind[kind] = _EXACT.add(by_kind[kind], cost.by_kind[kind])
            priced_calls += 1
            priced_tokens += cost.tokens
            continue
        key = (cost.provider, cost.model, cost.reason)
        prior = unpriced.get(key)
        calls, tokens = (0, TokenCounts()) if prior is None else (prior.calls, prior.tokens)
        unpriced[key] = UnpricedTotal(*key, calls + 1, tokens + cost.tokens)
    return CostTotal(
        table_version=table_version,
        usd=usd,
        by_kind=by_kind,
        priced_calls=priced_calls,
        priced_tokens=priced_tokens,
        unpriced=tuple(unpriced[k] for k in sorted(unpriced)),
    )


def cost_json(cost: Cost) -> dict[str, Any]:
    """A cost as JSON-ready data: USD as exact decimal strings, tokens by kind, the table version."""
    common: dict[str, Any] = {
        "provider": cost.provider,
        "model": cost.model,
        "day": cost.day.isoformat(),
        "tokens": {kind: cost.tokens.of(kind) for kind in TOKEN_KINDS},
        "table_version": cost.table_version,
    }
    if isinstance(cost, Unpriced):
        return {**common, "priced": False, "reason": cost.reason}
    return {
        **common,
        "priced": True,
        "usd": str(cost.usd),
        "usd_by_kind": {kind: str(cost.by_kind[kind]) for kind in TOKEN_KINDS},
        "tier_above_prompt_tokens": cost.tier,
        "multiplier": str(cost.multiplier),
    }
