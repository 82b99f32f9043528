"""Trends over iteration numbers: a rolling median and a least-squares line with its slope's 95% interval.

Pure functions of (x, y) points; the dashboard draws them and states the interval in words rather than a
yes/no from the sign of a noisy slope.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; past 30 the normal's 1.96 is within 2%.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with `df` (>= 1) degrees of freedom."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if df <= len(_T95):
        return _T95[df - 1]
    return 1.96 + 2.4 / df  # within 0.5% of the exact quantile for df > 30


@dataclass(frozen=True)
class Trend:
    """A least-squares line `y = intercept + slope * x` over `n` points, and the slope's 95% interval
    (`low`, `high`; None with fewer than 3 points or all x equal)."""

    n: int
    slope: float
    intercept: float
    low: float | None
    high: float | None

    @property
    def clear(self) -> bool:
        """Whether the 95% interval of the slope excludes 0."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def at(self, x: float) -> float:
        """The line's value at `x`."""
        return self.intercept + self.slope * x


def fit_trend(xs: Sequence[float], ys: Sequence[float]) -> Trend | None:
    """The least-squares line through the points, with the slope's 95% interval from the residuals
    (t with n - 2 degrees of freedom). None for fewer than 2 points or when every x is the same."""
    n = len(xs)
    if n != len(ys):
        raise ValueError(f"xs and ys differ in length: {n} and {len(ys)}")
    if n < 2:
        return None
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    if n < 3:
        return Trend(n, slope, intercept, None, None)
    residuals = math.fsum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    half = t95(n - 2) * math.sqrt(residuals / (n - 2) / sxx)
    return Trend(n, slope, intercept, slope - half, slope + half)


def rolling_median(ys: Sequence[float], window: int, at: Sequence[int] | None = None) -> list[float]:
    """The median of each point's trailing `window` points (fewer at the start), at every index or only at the
    indices `at`; `window` >= 1."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    indices = range(len(ys)) if at is None else at
    return [statistics.median(ys[max(0, i + 1 - window) : i + 1]) for i in indices]


def median_window(n: int) -> int:
    """A rolling-median window for `n` points: about a twentieth of them, odd, from 5 to 101."""
    return max(5, min(101, (n // 20) | 1))
