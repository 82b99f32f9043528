"""What iterations, phases, agents and models cost: each recorded LLM call priced at its own date, then grouped.

Read-time only: calls come from the events (`Iteration.LLMCallRecorded`) or the `llm_calls` view, prices from a
`PriceTable`; nothing priced is stored. Every figure carries the table version that produced it. Calls that
cannot be priced (a model the table does not know, no model reported, no usage reported) are counted apart
with their tokens, never as $0; so are tokens in the token metrics that no recorded call explains (stores
written before calls were recorded, or tokens a host added with `update_metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from itertrack.domain.model.iteration import Iteration
from itertrack.projections.cost import Cost, CostTotal, TokenCounts, Unpriced, call_day, price_call, sum_costs
from itertrack.projections.pricing import PriceTable
from itertrack.projections.rows import LLMCallRow


@dataclass(frozen=True)
class Call:
    """One LLM call as pricing needs it (from an event or a view row). `tokens` is None when the response
    reported no usage."""

    iteration_id: UUID
    agent_id: str
    phase: str
    provider: str
    model: str | None
    at: datetime
    tokens: TokenCounts | None
    batch: bool
    inference_geo: str | None


def calls_of_events(agent_id: str, events: Iterable[Iteration.Event]) -> list[Call]:
    """The LLM calls among one iteration's events, oldest first."""
    calls = []
    for e in events:
        if not isinstance(e, Iteration.LLMCallRecorded):
            continue
        u = e.usage
        tokens = (
            None
            if u is None
            else TokenCounts(
                input=u.input_tokens,
                output=u.output_tokens,
                cache_read=u.cache_read_input_tokens,
                cache_write_5m=u.cache_write_5m_tokens,
                cache_write_1h=u.cache_write_1h_tokens,
            )
        )
        calls.append(
            Call(e.originator_id, agent_id, e.phase, e.provider, e.model, e.timestamp, tokens, e.batch, e.inference_geo)
        )
    return calls


def calls_of_rows(rows: Iterable[LLMCallRow]) -> list[Call]:
    """The LLM calls of `llm_calls` view rows."""
    return [
        Call(
            r.iteration_id,
            r.agent_id,
            r.phase,
            r.provider,
            r.model,
            r.recorded_at,
            None
            if not r.usage_known
            else TokenCounts(
                input=r.input_tokens,
                output=r.output_tokens,
                cache_read=r.cache_read_input_tokens,
                cache_write_5m=r.cache_creation_5m_input_tokens,
                cache_write_1h=r.cache_creation_1h_input_tokens,
            ),
            r.batch,
            r.inference_geo,
        )
        for r in rows
    ]


class CostLine(BaseModel):
    """The cost of a group of calls (`group`: e.g. `{"phase": "analysis", "model": "claude-sonnet-4-5"}`).

    `usd`: exact dollars of the priced calls (None when none was priced); `complete`: every call of the group
    was priced. `unpriced_calls`/`unpriced_tokens`: calls the table could not price, with their tokens, and
    `unpriced_models` naming them; `unknown_usage_calls`: calls whose response reported no usage (not priced,
    no tokens). `tokens`: every token of the group's calls.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: dict[str, str | None]
    calls: int
    tokens: int
    usd: Decimal | None
    complete: bool
    unpriced_calls: int
    unpriced_tokens: int
    unpriced_models: list[str]
    unknown_usage_calls: int


class CostReport(BaseModel):
    """Calls priced with one table (`table_version`), grouped by `by` (e.g. `("phase", "model")`), and their total.

    `unattributed_tokens`: tokens in the token metrics that no recorded call explains (no model: unpriced).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    table_version: str
    by: tuple[str, ...]
    lines: list[CostLine]
    total: CostLine
    unattributed_tokens: int = 0


# The groupings a cost report can be split by, and how each call names its group.
_KEYS: Mapping[str, Callable[[Call], str | None]] = {
    "phase": lambda c: c.phase,
    "model": lambda c: c.model,
    "provider": lambda c: c.provider,
    "agent": lambda c: c.agent_id,
    "iteration": lambda c: str(c.iteration_id),
}


COST_GROUPS: tuple[str, ...] = tuple(_KEYS)


def price_calls(calls: Iterable[Call], table: PriceTable) -> CostTotal:
    """Each call with usage priced at its date (a call whose response named no model is unpriced), summed with
    priced and unpriced kept apart; calls without usage are left out (they have no tokens to price)."""
    costs: list[Cost] = []
    for c in calls:
        if c.tokens is None:
            continue
        if c.model is None:
            reason = "the response named no model"
            costs.append(Unpriced(c.provider, "", call_day(c.at), c.tokens, reason, table.version))
            continue
        costs.append(
            price_call(
                table,
                provider=c.provider,
                model=c.model,
                at=c.at,
                tokens=c.tokens,
                batch=c.batch,
                inference_geo=c.inference_geo,
            )
        )
    return sum_costs(costs, table_version=table.version)


def _line(group: dict[str, str | None], calls: Sequence[Call], table: PriceTable) -> CostLine:
    known = [c for c in calls if c.tokens is not None]
    total = price_calls(known, table)
    unpriced_calls = sum(u.calls for u in total.unpriced)
    unknown = len(calls) - len(known)
    return CostLine(
        group=group,
        calls=len(calls),
        tokens=sum(c.tokens.total for c in known if c.tokens is not None),
        usd=total.usd if total.priced_calls else None,
        complete=not total.unpriced and not unknown,
        unpriced_calls=unpriced_calls,
        unpriced_tokens=total.unpriced_tokens.total,
        unpriced_models=sorted({u.model or "(none)" for u in total.unpriced}),
        unknown_usage_calls=unknown,
    )


def cost_report(
    calls: Sequence[Call], table: PriceTable, by: Sequence[str] = ("phase", "model"), *, unattributed_tokens: int = 0
) -> CostReport:
    """Price each call at its date and group them by `by` (any of `phase`, `model`, `provider`, `agent`,
    `iteration`); lines in order of first appearance. Raises `KeyError` for an unknown grouping name."""
    key_of = [(name, _KEYS[name]) for name in by]
    groups: dict[tuple[str | None, ...], list[Call]] = {}
    for c in calls:
        groups.setdefault(tuple(f(c) for _, f in key_of), []).append(c)
    lines = [_line({name: k for (name, _), k in zip(key_of, key, strict=True)}, g, table) for key, g in groups.items()]
    total = _line({}, calls, table)
    if unattributed_tokens:
        total = total.model_copy(update={"complete": False})
    return CostReport(
        table_version=table.version, by=tuple(by), lines=lines, total=total, unattributed_tokens=unattributed_tokens
    )


def unattributed_tokens(metrics: Mapping[str, int | float], calls: Iterable[Call], phases: Iterable[str]) -> int:
    """Tokens in one iteration's `<phase>_tokens` metrics beyond its recorded calls' tokens (never negative)."""
    by_phase: dict[str, int] = {}
    for c in calls:
        if c.tokens is not None:
            by_phase[c.phase] = by_phase.get(c.phase, 0) + c.tokens.total
    extra = 0
    for phase in phases:
        value = metrics.get(f"{phase}_tokens", 0)
        extra += max(0, int(value) - by_phase.get(phase, 0))
    return extra


MICRO_DOLLAR = Decimal("0.000001")


def format_usd(value: Decimal | None) -> str:
    """`$1,234.567891` for display (rounded half-even to the micro-dollar; JSON keeps the exact figure), or `-`
    when nothing in the group had a price."""
    if value is None:
        return "-"
    return f"${value.quantize(MICRO_DOLLAR, rounding=ROUND_HALF_EVEN):,}"


def unpriced_text(line: CostLine) -> str:
    """What a cost line could not price, in words (`-` when nothing)."""
    parts = []
    if line.unpriced_calls:
        models = ", ".join(line.unpriced_models)
        parts.append(f"{line.unpriced_calls:,} calls, {line.unpriced_tokens:,} tokens ({models})")
    if line.unknown_usage_calls:
        parts.append(f"{line.unknown_usage_calls:,} without usage")
    return "; ".join(parts) or "-"
