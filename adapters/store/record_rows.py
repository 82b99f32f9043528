"""The columns of the `agent_iterations` table, shared by every store's recorder."""

from __future__ import annotations

from typing import Any

from itertrack.domain.model.records import IterationRecord

RECORDS_TABLE = "agent_iterations"
JSON_COLUMNS = ("strategy", "scan_results", "backtest_results", "analysis", "refinements")
COLUMNS = (
    "id",
    "agent_id",
    "iteration_number",
    *JSON_COLUMNS,
    "manual_guidance",
    "iteration_status",
    "created_at",
)


def record_of(kwargs: dict[str, Any]) -> IterationRecord | None:
    """The record passed down by `save(..., iteration_record=...)`, if any."""
    record = kwargs.get("iteration_record")
    if record is not None and not isinstance(record, IterationRecord):
        msg = f"iteration_record must be an IterationRecord, not {type(record).__name__}"
        raise TypeError(msg)
    return record


def records_of(kwargs: dict[str, Any]) -> list[IterationRecord]:
    """The records an insert carries: `iteration_record=` (one change's) and `iteration_records=` (a group's)."""
    one = record_of(kwargs)
    many = list(kwargs.get("iteration_records") or ())
    for record in many:
        if not isinstance(record, IterationRecord):
            msg = f"iteration_records must hold IterationRecords, not {type(record).__name__}"
            raise TypeError(msg)
    return many if one is None else [one, *many]
