"""Exact read-model totals on SQLite, at any size the events allow.

SQLite's integers stop at 2**63-1: an agent's total over many iterations can pass that (a host that reports
nanoseconds as milliseconds does at the sixth iteration), and then every catch-up batch failed with an
overflow and the views stopped for every agent. Totals past that range are stored as decimal text; the
views add and sum them with the two SQL functions here (registered on each connection the views use), and
read them back as Python ints. Floats stay floats (a total that mixes in a float is a float, as in Python).
PostgreSQL's `numeric` needs none of this.
"""

from __future__ import annotations

import sqlite3

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Total = int | float


def to_db(value: Total) -> Total | str:
    """A total as SQLite can hold it: as is, or decimal text past the 64-bit integer range."""
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return str(value)
    return value


def from_db(value: object) -> Total:
    """A total as SQLite returned it (integer, real, or decimal text for a big integer) as a Python number.

    Raises `ValueError` for text that is not a number, `TypeError` for another type (a row written by hand).
    """
    if isinstance(value, str):
        return int(value) if value.lstrip("-").isdigit() else float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"total={value!r}: not a number")
    return value


def _add(a: object, b: object) -> Total | str | None:
    if a is None or b is None:
        return None if a is None and b is None else to_db(from_db(b if a is None else a))
    return to_db(from_db(a) + from_db(b))


class _Sum:
    """`itertrack_sum(total)`: SQL's sum, exact past the 64-bit range."""

    def __init__(self) -> None:
        self.total: Total | None = None

    def step(self, value: object) -> None:  # sqlite3's aggregate protocol
        if value is not None:
            number = from_db(value)
            self.total = number if self.total is None else self.total + number

    def finalize(self) -> int:  # declared as sqlite3's protocol wants; returns a total, decimal text or None
        return None if self.total is None else to_db(self.total)  # type: ignore[return-value]


def register(connection: sqlite3.Connection) -> None:
    """Give the connection `itertrack_add(a, b)` and `itertrack_sum(x)`.

    Called for each transaction of the views (about 1 us): sqlite3 connections cannot be weakly referenced,
    and an id kept of a closed connection could name a new one that lacks the functions.
    """
    connection.create_function("itertrack_add", 2, _add, deterministic=True)
    connection.create_aggregate("itertrack_sum", 1, _Sum)
