"""Numbers people read: durations ("1 d 8 h 38 min", "12.3 s"), dollars and token counts."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

_UNITS = (("d", 86_400), ("h", 3_600), ("min", 60))


def human_duration(seconds: float | None) -> str:
    """`seconds` as the two or three largest units: "1 d 8 h 38 min", "3 h 5 min", "4 min 12 s", "12.3 s",
    "850 ms"; "-" for None. Negative durations (clock skew) read as 0."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    parts = []
    for name, size in _UNITS:
        if whole >= size:
            parts.append(f"{whole // size} {name}")
            whole %= size
    if seconds < 3_600 and whole:
        parts.append(f"{whole} s")
    return " ".join(parts[:3])


def human_usd(value: Decimal | float | None) -> str:
    """Dollars to the cent ("$1,234.57"), to four places under a dollar ("$0.0123"); "-" for None (no price)."""
    if value is None:
        return "-"
    amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    places = Decimal("0.01") if abs(amount) >= 1 else Decimal("0.0001")
    return f"${amount.quantize(places, rounding=ROUND_HALF_EVEN):,}"


def human_count(value: float | None) -> str:
    """A count with thousands separators ("12,345"); "-" for None."""
    return "-" if value is None else f"{round(value):,}"


def seconds_unit(seconds: Sequence[float]) -> tuple[str, float]:
    """The unit a chart of these durations (seconds) reads best in, from their median, and its size in
    seconds: ("ms", 0.001), ("s", 1.0), ("min", 60.0) or ("h", 3600.0); ("s", 1.0) for none."""
    if not seconds:
        return "s", 1.0
    middle = sorted(seconds)[len(seconds) // 2]
    if middle < 1:
        return "ms", 0.001
    if middle >= 2 * 3600:
        return "h", 3600.0
    if middle >= 120:
        return "min", 60.0
    return "s", 1.0
