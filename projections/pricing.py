"""The price table: effective-dated rates per provider and model, validated with pydantic, and the lookup.

Rates are USD per million tokens (`Decimal`, exact), one per token kind (`TOKEN_KINDS`), every one written
out: the cache rates are not fractions of the input rate. A row applies to a call when its provider matches,
one of its `models` matches the model id (exactly, or as a glob: `*` any run, `?` one character, `[...]` a
class; case-sensitive) and its `effective_from` is on or before the call's UTC date. Of the rows that apply,
an exact id beats any pattern, a pattern with more literal characters beats one with fewer, and then the
latest `effective_from` wins (a price change is a new row; the old row stays for history).

The shipped table is `prices.toml` beside this module (package data); `parse_price_table` reads a user's.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fnmatch import fnmatchcase
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from itertrack.domain.model.errors import PriceTableError

TokenKind = Literal["input", "output", "cache_read", "cache_write_5m", "cache_write_1h"]
# The token kinds a rate exists for, in the order tables and breakdowns show them.
TOKEN_KINDS: tuple[TokenKind, ...] = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
SHIPPED = "shipped"
SHIPPED_FILE = "prices.toml"
PER_TOKENS = Decimal(1_000_000)  # rates are per million tokens

Rate = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Multiplier = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
_GLOB = re.compile(r"\[[^\]]*\]|[*?]")


class Rates(BaseModel):
    """The five rates, USD per million tokens, each given explicitly (none derived from another)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Rate
    output: Rate
    cache_read: Rate
    cache_write_5m: Rate
    cache_write_1h: Rate

    def of(self, kind: TokenKind) -> Decimal:
        """The rate of one token kind."""
        rate: Decimal = getattr(self, kind)
        return rate

    def rates(self) -> Rates:
        """Just the five rates (a tier or a row without its other fields)."""
        return Rates(**{kind: self.of(kind) for kind in TOKEN_KINDS})


class Tier(Rates):
    """Rates for every token of a request whose prompt (input + cache reads + cache writes) is over the threshold."""

    above_prompt_tokens: int = Field(gt=0)


class PriceRow(Rates):
    """One row: a provider's models, the date from which these rates are in force, the rates and any tiers."""

    provider: str = Field(min_length=1)
    models: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1)
    effective_from: date
    tiers: tuple[Tier, ...] = ()
    name: str | None = None  # shown in `itertrack prices list`, e.g. "Claude Sonnet 4.5"

    @field_validator("models")
    @classmethod
    def _valid_patterns(cls, models: tuple[str, ...]) -> tuple[str, ...]:
        for model in models:
            if model.count("[") != model.count("]"):
                raise ValueError(f"{model!r} has an unclosed [ in its pattern")
        return models

    @field_validator("tiers")
    @classmethod
    def _tiers_ascend(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        thresholds = [t.above_prompt_tokens for t in tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError(f"thresholds {thresholds} must be distinct and in ascending order")
        return tiers

    def rates_for_prompt(self, prompt_tokens: int) -> tuple[Rates, int | None]:
        """The rates for a request with this prompt size, and the threshold of the tier used (None: base rates)."""
        chosen: Tier | None = None
        for tier in self.tiers:
            if prompt_tokens > tier.above_prompt_tokens:
                chosen = tier
        if chosen is None:
            return self.rates(), None
        return chosen.rates(), chosen.above_prompt_tokens


class ProviderMultipliers(BaseModel):
    """A provider's multipliers of every rate: Batch API calls, and each `inference_geo` the provider reports."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str = Field(min_length=1)
    batch: Multiplier | None = None
    inference_geo: dict[str, Multiplier] = Field(default_factory=dict)


class PriceTableData(BaseModel):
    """A price table file's content: a declared `version`, the `prices` rows and per-provider `multipliers`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1)
    prices: tuple[PriceRow, ...]
    multipliers: tuple[ProviderMultipliers, ...] = ()

    @model_validator(mode="after")
    def _no_duplicates(self) -> PriceTableData:
        seen: dict[tuple[str, str, date], int] = {}
        for index, row in enumerate(self.prices):
            for model in row.models:
                key = (row.provider.lower(), model, row.effective_from)
                if key in seen:
                    raise _DuplicateRowError(index, model, row.effective_from, seen[key])
                seen[key] = index
        providers = [m.provider.lower() for m in self.multipliers]
        if len(providers) != len(set(providers)):
            raise ValueError(f"multipliers: a provider is listed twice in {providers}")
        return self


class _DuplicateRowError(ValueError):
    def __init__(self, index: int, model: str, effective_from: date, first: int) -> None:
        self.index = index
        self.model = model
        super().__init__(
            f"model {model!r} from {effective_from} is already priced by prices[{first}]: "
            "which row applies would be ambiguous"
        )


@dataclass(frozen=True)
class RowMatch:
    """The row that prices a call: its index in the table, the row, and the model entry that matched."""

    index: int
    row: PriceRow
    matched: str
    exact: bool


@dataclass(frozen=True)
class NoPrice:
    """Why no row prices a call (no row for the model, or none in force yet on the call's date)."""

    reason: str


@dataclass(frozen=True)
class PriceTable:
    """A validated price table, where it came from (`shipped` or a file's path) and its version.

    `version` is the declared version and a hash of the content (`2026-11-29+3f2a9c1b7e4d`), so a file edited
    without changing its declared version still reports a different version with every cost.
    """

    data: PriceTableData
    source: str
    version: str
    # The row each (provider, model, UTC day) found, remembered: a scrape, a page or a trace prices many calls
    # over few models and days, and matching the rows' patterns is most of a call's pricing. The table is
    # immutable, so what was found stays true.
    _found: dict[tuple[str, str, date], RowMatch | NoPrice] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    def multipliers_of(self, provider: str) -> ProviderMultipliers | None:
        """The provider's multipliers (None when the table has none for it)."""
        wanted = provider.lower()
        return next((m for m in self.data.multipliers if m.provider.lower() == wanted), None)

    def lookup(self, provider: str, model: str, on: date) -> RowMatch | NoPrice:
        """The row in force for (provider, model) on the UTC date `on`, or why there is none (found once per
        (provider, model, day), then remembered).

        Exact beats pattern, more literal characters beat fewer, then the latest `effective_from` on or before
        `on` wins; on a full tie (two patterns as specific, from the same date) the later row in the file wins.
        """
        key = (provider, model, on)
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = self._find(provider, model, on)
        return found

    def _find(self, provider: str, model: str, on: date) -> RowMatch | NoPrice:
        wanted = provider.lower()
        candidates: list[tuple[tuple[int, int, date, int], RowMatch]] = []
        known_later: list[date] = []
        for index, row in enumerate(self.data.prices):
            if row.provider.lower() != wanted:
                continue
            best = _best_entry(row.models, model)
            if best is None:
                continue
            entry, exact, literal = best
            if row.effective_from > on:
                known_later.append(row.effective_from)
                continue
            rank = (1 if exact else 0, literal, row.effective_from, index)
            candidates.append((rank, RowMatch(index, row, entry, exact)))
        if candidates:
            return max(candidates, key=lambda c: c[0])[1]
        if known_later:
            return NoPrice(f"no price in force on {on.isoformat()} (the first row starts {min(known_later)})")
        return NoPrice(f"no price for model {model!r} of provider {provider!r} in the table")


def _best_entry(models: Sequence[str], model: str) -> tuple[str, bool, int] | None:
    """The most specific of a row's model entries that matches `model`: (entry, exact, literal characters)."""
    best: tuple[str, bool, int] | None = None
    for entry in models:
        is_pattern = _GLOB.search(entry) is not None
        if not is_pattern:
            if entry == model:
                return entry, True, len(entry)
            continue
        if fnmatchcase(model, entry):
            literal = len(_GLOB.sub("", entry))
            if best is None or literal > best[2]:
                best = (entry, False, literal)
    return best


def parse_price_table(text: str, *, fmt: Literal["toml", "json"], source: str) -> PriceTable:
    """A price table from a file's text (TOML or JSON, the same shape), numbers read as exact decimals.

    Raises `PriceTableError` naming the source, the row (index and model), the field and its value.
    """
    try:
        raw: Any = tomllib.loads(text, parse_float=Decimal) if fmt == "toml" else json.loads(text, parse_float=Decimal)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise PriceTableError(source, "file", text[:60], f"is not valid {fmt.upper()}: {e}") from None
    return price_table_of(raw, source=source)


def price_table_of(raw: Any, *, source: str) -> PriceTable:
    """A price table from parsed data (a mapping with `version`, `prices`, `multipliers`).

    Raises `PriceTableError` naming the source, the row (index and model), the field and its value.
    """
    try:
        data = PriceTableData.model_validate(raw)
    except ValidationError as e:
        raise _table_error(e, raw, source) from None
    return PriceTable(data=data, source=source, version=f"{data.version}+{content_hash(data)}")


def content_hash(data: PriceTableData) -> str:
    """The first 12 hex digits of the SHA-256 of the table's canonical JSON (what the rates are, not the text)."""
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@cache
def shipped_price_table() -> PriceTable:
    """The table shipped with the package (`prices.toml`, package data of `itertrack.projections`)."""
    text = resources.files("itertrack.projections").joinpath(SHIPPED_FILE).read_text(encoding="utf-8")
    return parse_price_table(text, fmt="toml", source=SHIPPED)


@dataclass(frozen=True)
class UnpricedModel:
    """A (provider, model) the table cannot price on some dates: the first and last such date, and why."""

    provider: str
    model: str
    first: date
    last: date
    calls: int
    reason: str


def unpriced_models(table: PriceTable, calls: Iterable[tuple[str, str, date]]) -> list[UnpricedModel]:
    """Of the given (provider, model, UTC date) triples, those the table has no price for, grouped per
    (provider, model), sorted by provider and model; an empty list when every one is priced."""
    found: dict[tuple[str, str], UnpricedModel] = {}
    for provider, model, day in calls:
        match = table.lookup(provider, model, day)
        if isinstance(match, RowMatch):
            continue
        key = (provider, model)
        prior = found.get(key)
        if prior is None:
            found[key] = UnpricedModel(provider, model, day, day, 1, match.reason)
        else:
            found[key] = UnpricedModel(
                provider, model, min(prior.first, day), max(prior.last, day), prior.calls + 1, prior.reason
            )
    return [found[k] for k in sorted(found)]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()  # the value a table error shows for a field that is not there


def _table_error(error: ValidationError, raw: Any, source: str) -> PriceTableError:
    first = error.errors()[0]
    loc = list(first["loc"])
    if first["type"] == "missing":
        first["input"] = MISSING
    more = error.error_count() - 1
    reason = str(first["msg"]).removeprefix("Value error, ") + (f" (and {more} more problem(s))" if more else "")
    ctx_error = (first.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _DuplicateRowError):
        return PriceTableError(source, "models", ctx_error.model, reason, row=ctx_error.index, model=ctx_error.model)
    if len(loc) >= 2 and loc[0] == "prices" and isinstance(loc[1], int):
        row = loc[1]
        field = _path(loc[2:]) or "row"
        return PriceTableError(source, field, first.get("input"), reason, row=row, model=_first_model(raw, row))
    return PriceTableError(source, _path(loc) or "table", first.get("input"), reason)


def _path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _first_model(raw: Any, row: int) -> str | None:
    try:
        models = raw["prices"][row]["models"]
    except (KeyError, IndexError, TypeError):
        return None
    if isinstance(models, list | tuple) and models and isinstance(models[0], str):
        return models[0]
    return models if isinstance(models, str) else None


def table_rows(table: PriceTable) -> list[Mapping[str, Any]]:
    """The table's rows as plain data (what `itertrack prices list --json` prints), in file order."""
    return [row.model_dump(mode="json", exclude_none=True) for row in table.data.prices]
