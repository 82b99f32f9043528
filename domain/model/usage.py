"""LLM token usage as Claude reports it, and the metrics it adds to a phase."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

from itertrack.domain.model.errors import InvalidMetricError
from itertrack.domain.model.metrics import METRIC_NAME, time_metric, tokens_metric

USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
# `usage.cache_creation`'s split of the cache writes by lifetime, and the fields that keep it here.
CACHE_CREATION_SPLIT = {
    "ephemeral_5m_input_tokens": "cache_creation_5m_input_tokens",
    "ephemeral_1h_input_tokens": "cache_creation_1h_input_tokens",
}
MAX_SERVER_TOOLS = 20
MAX_TIER = 50


def usage_metric(phase: str, kind: str) -> str:
    """Name of the metric that sums one kind of token count (one of `USAGE_FIELDS`) in `phase`."""
    return f"{phase}_{kind}"


def phase_metric_names(phase: str) -> tuple[str, ...]:
    """Every metric name the tracker writes for `phase`: its time in ms, its token sum, and each kind's tokens."""
    return (time_metric(phase), tokens_metric(phase), *(usage_metric(phase, kind) for kind in USAGE_FIELDS))


def token_metric_names(phase: str) -> tuple[str, ...]:
    """The token metrics of `phase` (`<phase>_tokens` and the four per-kind ones) an LLM call adds to."""
    return phase_metric_names(phase)[1:]


def _get(source: object, name: str) -> Any:
    return source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)


def _has(source: object, name: str) -> bool:
    return (name in source) if isinstance(source, Mapping) else hasattr(source, name)


def _count(value: object, field: str) -> int:
    """A token or request count: None counts 0; anything but a non-negative int raises `InvalidMetricError`."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidMetricError(field, value, "must be a non-negative int")
    return value


class LLMUsage(BaseModel):
    """Token counts of one LLM response, as the provider reported them (counts in tokens).

    `input_tokens` excludes the two cache counts (Anthropic bills the three at different rates).
    `cache_creation_5m_input_tokens` / `cache_creation_1h_input_tokens`: the response's split of the
    cache writes by lifetime (`usage.cache_creation`), None when it did not give one (all writes are then
    5-minute writes: see `cache_write_5m_tokens`). `server_tool_use`: request counts of server tools
    (`{"web_search_requests": 2}`). `service_tier`: as reported (`standard`, `priority`, `batch`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: NonNegativeInt = 0
    output_tokens: NonNegativeInt = 0
    cache_creation_input_tokens: NonNegativeInt = 0
    cache_read_input_tokens: NonNegativeInt = 0
    cache_creation_5m_input_tokens: NonNegativeInt | None = None
    cache_creation_1h_input_tokens: NonNegativeInt | None = None
    server_tool_use: dict[str, NonNegativeInt] = Field(default_factory=dict)
    service_tier: str | None = Field(default=None, max_length=MAX_TIER)

    @model_validator(mode="after")
    def _split_adds_up(self) -> Self:
        split = (self.cache_creation_5m_input_tokens, self.cache_creation_1h_input_tokens)
        if split != (None, None) and sum(n or 0 for n in split) != self.cache_creation_input_tokens:
            raise ValueError(
                f"cache_creation splits {sum(n or 0 for n in split)} tokens by lifetime but "
                f"cache_creation_input_tokens is {self.cache_creation_input_tokens}"
            )
        return self

    @property
    def total(self) -> int:
        """All tokens of the response: input, output and both cache counts."""
        return self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    @property
    def prompt_tokens(self) -> int:
        """The request's prompt: input + cache reads + cache writes (what a prompt-length price tier counts)."""
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens

    @property
    def cache_write_5m_tokens(self) -> int:
        """Cache writes at the 5-minute rate: the split's, or every cache write when the response gave none."""
        if self.cache_creation_5m_input_tokens is None and self.cache_creation_1h_input_tokens is None:
            return self.cache_creation_input_tokens
        return self.cache_creation_5m_input_tokens or 0

    @property
    def cache_write_1h_tokens(self) -> int:
        """Cache writes at the 1-hour rate (0 when the response gave no split)."""
        return self.cache_creation_1h_input_tokens or 0

    def __add__(self, other: LLMUsage) -> LLMUsage:
        """Both responses' counts added (the cache-write split kept when either gave one)."""
        split = any(
            u.cache_creation_5m_input_tokens is not None or u.cache_creation_1h_input_tokens is not None
            for u in (self, other)
        )
        tools = dict(self.server_tool_use)
        for name, n in other.server_tool_use.items():
            tools[name] = tools.get(name, 0) + n
        return LLMUsage(
            **{f: getattr(self, f) + getattr(other, f) for f in USAGE_FIELDS},
            cache_creation_5m_input_tokens=self.cache_write_5m_tokens + other.cache_write_5m_tokens if split else None,
            cache_creation_1h_input_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens if split else None,
            server_tool_use=tools,
            service_tier=self.service_tier if self.service_tier == other.service_tier else None,
        )

    @classmethod
    def of(cls, usage: object) -> LLMUsage:
        """Read a usage given as an `LLMUsage`, a mapping, or an object with the four attributes (Claude's SDK).

        Also read: `cache_creation` (its `ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`),
        `server_tool_use` (its `*_requests` counts) and `service_tier`. Raises `InvalidMetricError` naming the
        field for a count that is not a non-negative int, and naming `usage` when it has no token count at all
        (None included: `read` takes that as usage unknown instead).
        """
        read = cls.read(usage)
        if read is None:
            if usage is None:
                raise InvalidMetricError("usage", usage, "must be a usage object or a mapping of token counts")
            raise InvalidMetricError("usage", usage, f"has none of {', '.join(USAGE_FIELDS)}")
        return read

    @classmethod
    def read(cls, usage: object) -> LLMUsage | None:
        """As `of`, but None (usage unknown) for a usage that is None or has no token count at all.

        Raises `InvalidMetricError` for a str, bytes or number given as usage, and for a bad count.
        """
        if isinstance(usage, LLMUsage):
            return usage
        if usage is None:
            return None
        if isinstance(usage, str | bytes | int | float):
            raise InvalidMetricError("usage", usage, "must be a usage object or a mapping of token counts")
        counts: dict[str, Any] = {f: _count(_get(usage, f), f"usage.{f}") for f in USAGE_FIELDS}
        split = _cache_split(_get(usage, "cache_creation"))
        if split and _get(usage, "cache_creation_input_tokens") is None:
            counts["cache_creation_input_tokens"] = sum(split.values())
        elif split and sum(split.values()) != counts["cache_creation_input_tokens"]:
            raise InvalidMetricError(
                "usage.cache_creation",
                _get(usage, "cache_creation"),
                f"splits {sum(split.values())} tokens by lifetime but cache_creation_input_tokens is "
                f"{counts['cache_creation_input_tokens']}",
            )
        counts.update(split)
        known = bool(split) or any(_has(usage, f) for f in USAGE_FIELDS)
        if not known:
            return None
        counts["server_tool_use"] = _server_tools(_get(usage, "server_tool_use"))
        tier = _get(usage, "service_tier")
        if tier is not None:
            if not isinstance(tier, str) or len(tier) > MAX_TIER or not tier.isprintable():
                raise InvalidMetricError("usage.service_tier", tier, f"must be a printable str of at most {MAX_TIER}")
            counts["service_tier"] = tier
        return cls(**counts)

    @classmethod
    def from_stream(cls, events: Iterable[object]) -> LLMUsage | None:
        """The final usage of a streamed Messages response, from its events (dicts or the SDK's event objects).

        `message_start` carries the input-side counts (`message.usage`); each `message_delta`'s `usage` is
        cumulative, so its counts replace the earlier ones (adding every delta would count output several
        times). None when no event carried usage. Raises `InvalidMetricError` as `read` does.
        """
        merged: dict[str, Any] = {}
        for event in events:
            kind = _get(event, "type")
            if kind == "message_start":
                usage = _get(_get(event, "message"), "usage")
            elif kind == "message_delta":
                usage = _get(event, "usage")
            else:
                continue
            if usage is None:
                continue
            fields = usage if isinstance(usage, Mapping) else _fields_of(usage)
            merged.update({name: value for name, value in fields.items() if value is not None})
        return cls.read(merged) if merged else None

    def as_metrics(self, phase: str) -> dict[str, int]:
        """`<phase>_tokens` (the sum) plus each count as `<phase>_<count>`, so a cost model can price them."""
        metrics = {tokens_metric(phase): self.total}
        for field in USAGE_FIELDS:
            metrics[usage_metric(phase, field)] = getattr(self, field)
        return metrics


def _fields_of(usage: object) -> dict[str, Any]:
    """An SDK usage object's fields (pydantic's `model_dump`, else its attributes)."""
    dump = getattr(usage, "model_dump", None)
    if callable(dump):
        dumped = dump()
        if isinstance(dumped, Mapping):
            return dict(dumped)
    try:
        attributes = vars(usage)
    except TypeError:  # no __dict__ (slots): read no further fields
        return {}
    return {name: value for name, value in attributes.items() if not name.startswith("_")}


def _cache_split(creation: object) -> dict[str, int]:
    """`usage.cache_creation` as our two split fields ({} when it gives no split)."""
    if creation is None or isinstance(creation, str | bytes | int | float):
        return {}
    given = {
        ours: _count(_get(creation, theirs), f"usage.cache_creation.{theirs}")
        for theirs, ours in CACHE_CREATION_SPLIT.items()
        if _get(creation, theirs) is not None
    }
    return {ours: given.get(ours, 0) for ours in CACHE_CREATION_SPLIT.values()} if given else {}


def _server_tools(tools: object) -> dict[str, int]:
    """`usage.server_tool_use` as {name: count}: its int fields (`web_search_requests`, ...), None ones left out."""
    if tools is None or isinstance(tools, str | bytes | int | float):
        return {}
    fields = tools if isinstance(tools, Mapping) else _fields_of(tools)
    counts: dict[str, int] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if not isinstance(name, str) or not METRIC_NAME.fullmatch(name) or len(name) > 100:
            raise InvalidMetricError("usage.server_tool_use (name)", name, "must be snake_case ASCII")
        counts[name] = _count(value, f"usage.server_tool_use.{name}")
    if len(counts) > MAX_SERVER_TOOLS:
        raise InvalidMetricError("usage.server_tool_use", f"<{len(counts)} entries>", f"at most {MAX_SERVER_TOOLS}")
    return counts
