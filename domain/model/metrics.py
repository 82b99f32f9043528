"""Metric naming and amount rules; metrics are additive running totals."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import cast

from itertrack.domain.model.errors import InvalidMetricError

Amount = int | float

METRIC_NAME = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
MAX_METRIC_NAME = 100
MAX_METRICS_PER_UPDATE = 200
# Totals must fit a signed 64-bit column in the read models.
MAX_AMOUNT = 2**63 - 1


def time_metric(phase: str) -> str:
    """Name of the metric that sums the milliseconds spent in `phase`."""
    return f"{phase}_time_ms"


def tokens_metric(phase: str) -> str:
    """Name of the metric that sums the LLM tokens used in `phase`."""
    return f"{phase}_tokens"


def check_amount(name: str, amount: object) -> Amount:
    """An amount is a finite, non-negative int or float; bool is not a number here."""
    kind = type(amount)
    if kind is int or kind is float:  # the common case, decided in one chained comparison
        number = cast(Amount, amount)
        if 0 <= number <= MAX_AMOUNT:  # false for NaN and the infinities too
            return number
    field = f"metrics[{name!r}]"
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise InvalidMetricError(field, amount, "must be an int or a float")
    if isinstance(amount, float) and not math.isfinite(amount):
        raise InvalidMetricError(field, amount, "must be finite")
    if amount < 0:
        raise InvalidMetricError(field, amount, "must not be negative")
    if amount > MAX_AMOUNT:
        raise InvalidMetricError(field, amount, f"must be at most {MAX_AMOUNT}")
    return amount


def check_metrics(metrics: object) -> dict[str, Amount]:
    """Validate a whole update and return it as a plain dict, or raise naming the first bad entry."""
    if not isinstance(metrics, Mapping):
        raise InvalidMetricError("metrics", metrics, "must be a mapping of metric name to amount")
    if not metrics:
        raise InvalidMetricError("metrics", metrics, "must name at least one metric")
    if len(metrics) > MAX_METRICS_PER_UPDATE:
        raise InvalidMetricError("metrics", f"<{len(metrics)} entries>", f"at most {MAX_METRICS_PER_UPDATE} per update")
    checked: dict[str, Amount] = {}
    for name, amount in metrics.items():
        if not isinstance(name, str) or len(name) > MAX_METRIC_NAME or not METRIC_NAME.fullmatch(name):
            raise InvalidMetricError(
                "metrics (name)", name, f"must be snake_case ASCII of at most {MAX_METRIC_NAME} characters"
            )
        checked[name] = check_amount(name, amount)
    return checked


def add_metrics(totals: Mapping[str, Amount], update: Mapping[str, Amount]) -> dict[str, Amount]:
    """New totals: each amount added to its metric's running total (int stays int until a float joins)."""
    result = dict(totals)
    for name, amount in update.items():
        result[name] = result.get(name, 0) + amount
    return result
