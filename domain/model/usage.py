"""LLM token usage as Claude reports it, and the metrics it adds to a phase."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, NonNegativeInt

from itertrack.domain.model.errors import InvalidMetricError
from itertrack.domain.model.metrics import time_metric, tokens_metric

USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def usage_metric(phase: str, kind: str) -> str:
    """Name of the metric that sums one kind of token count (one of `USAGE_FIELDS`) in `phase`."""
    return f"{phase}_{kind}"


def phase_metric_names(phase: str) -> tuple[str, ...]:
    """Every metric name the tracker writes for `phase`: its time in ms, its token sum, and each kind's tokens."""
    return (time_metric(phase), tokens_metric(phase), *(usage_metric(phase, kind) for kind in USAGE_FIELDS))


class LLMUsage(BaseModel):
    """Token counts of one LLM response; `input_tokens` excludes the two cache counts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: NonNegativeInt = 0
    output_tokens: NonNegativeInt = 0
    cache_creation_input_tokens: NonNegativeInt = 0
    cache_read_input_tokens: NonNegativeInt = 0

    @property
    def total(self) -> int:
        """All tokens of the response: input, output and both cache counts."""
        return self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def __add__(self, other: LLMUsage) -> LLMUsage:
        return LLMUsage(**{f: getattr(self, f) + getattr(other, f) for f in USAGE_FIELDS})

    @classmethod
    def of(cls, usage: object) -> LLMUsage:
        """Read a usage given as an `LLMUsage`, a mapping, or an object with the four attributes (Claude's SDK)."""
        if isinstance(usage, LLMUsage):
            return usage
        counts: dict[str, Any] = {}
        for field in USAGE_FIELDS:
            value = usage.get(field) if isinstance(usage, Mapping) else getattr(usage, field, None)
            if value is None:
                value = 0
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidMetricError(f"usage.{field}", value, "must be a non-negative int")
            counts[field] = value
        if usage is None or isinstance(usage, str | bytes | int | float):
            raise InvalidMetricError("usage", usage, "must be a usage object or a mapping of token counts")
        if not any(counts.values()) and not any(
            (f in usage) if isinstance(usage, Mapping) else hasattr(usage, f) for f in USAGE_FIELDS
        ):
            raise InvalidMetricError("usage", usage, f"has none of {', '.join(USAGE_FIELDS)}")
        # Other fields (the SDK's service_tier, server_tool_use, ...) are not token counts: ignored.
        return cls(**counts)

    def as_metrics(self, phase: str) -> dict[str, int]:
        """`<phase>_tokens` (the sum) plus each count as `<phase>_<count>`, so a cost model can price them."""
        metrics = {tokens_metric(phase): self.total}
        for field in USAGE_FIELDS:
            metrics[usage_metric(phase, field)] = getattr(self, field)
        return metrics
