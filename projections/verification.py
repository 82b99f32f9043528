"""Integrity checks, pure: event sequences, saved records, and read models against a fresh fold."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.metrics import Amount
from itertrack.domain.model.phases import Phase
from itertrack.domain.model.usage import LLMUsage, token_metric_names
from itertrack.projections.fold import BatchChanges, BatchFold, LoadedState
from itertrack.projections.rows import CurrentPhase, LLMCallRow

Check = Literal["versions", "event_ids", "time_order", "records", "read_models", "read_models_advance", "token_totals"]


class Problem(BaseModel):
    """One thing found wrong, with the iteration (or read-model row) it concerns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    check: Check
    iteration_id: UUID | None
    detail: str


class VerifyReport(BaseModel):
    """What `verify` checked and what it found; `ok` when nothing.

    `require_records` is the host policy applied: when true, a completed iteration without its
    `agent_iterations` row is a problem; when false (the default) only records inconsistent with the
    events are (a `RecordSaved` without its row, a row without its `RecordSaved` or its iteration).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    require_records: bool
    events: int
    iterations: int
    records: int
    read_model_rows: int
    read_model_position: int
    # Events of the log the read models have not applied, and the time of the oldest of them (None: none).
    read_models_behind: int = 0
    behind_since: AwareDatetime | None = None
    seconds: float
    problems: tuple[Problem, ...]


@dataclass
class ReadModelState:
    """The read models as plain mappings, from the view tables or from a fold."""

    current: dict[UUID, CurrentPhase] = field(default_factory=dict)
    metrics: dict[tuple[UUID, str], float] = field(default_factory=dict)
    agents: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)
    durations: dict[tuple[UUID, str], tuple[float, int]] = field(default_factory=dict)
    llm_calls: dict[tuple[UUID, int], LLMCallRow] = field(default_factory=dict)

    @classmethod
    def of_fold(cls, changes: BatchChanges) -> ReadModelState:
        """The state a fold from empty views produces."""
        return cls(
            current=dict(changes.current),
            metrics=dict(changes.metrics),
            agents={k: (float(t), n) for k, (t, n) in changes.agent_deltas.items()},
            durations=dict(changes.durations),
            llm_calls=dict(changes.llm_calls),
        )

    @property
    def rows(self) -> int:
        """How many rows the state holds."""
        return len(self.current) + len(self.metrics) + len(self.agents) + len(self.durations) + len(self.llm_calls)


@dataclass
class _Seen:
    version: int
    timestamp: datetime
    phase: str = Phase.INITIALIZING.value
    saved: bool = False


class EventChecker:
    """Consumes events in log order: checks each iteration's versions and times, and folds the read models."""

    def __init__(self, fold_until: int) -> None:
        self.fold_until = fold_until
        self.problems: list[Problem] = []
        self.seen: dict[UUID, _Seen] = {}
        self.events = 0
        # Every event's id, as an int (about 64 bytes each): the same id twice is a change applied twice.
        self._event_ids: set[int] = set()
        self._fold = BatchFold(LoadedState())
        self.plain_tokens: dict[tuple[UUID, str], Amount] = {}

    def add(self, event: Iteration.Event, notification_id: int) -> None:
        """Check one event and, if the views have applied it, fold it into the reference."""
        self.events += 1
        iid, version = event.originator_id, event.originator_version
        event_id = event.event_id.int
        if event_id in self._event_ids:
            self.problems.append(
                Problem(
                    check="event_ids",
                    iteration_id=iid,
                    detail=f"version {version} repeats event id {event.event_id} (a change stored twice)",
                )
            )
        self._event_ids.add(event_id)
        before = self.seen.get(iid)
        if before is None:
            if version != 1:
                self.problems.append(
                    Problem(check="versions", iteration_id=iid, detail=f"starts at version {version}, not 1")
                )
            before = self.seen[iid] = _Seen(version=version, timestamp=event.timestamp)
        else:
            if version != before.version + 1:
                self.problems.append(
                    Problem(check="versions", iteration_id=iid, detail=f"version {version} follows {before.version}")
                )
            if event.timestamp < before.timestamp:
                self.problems.append(
                    Problem(
                        check="time_order",
                        iteration_id=iid,
                        detail=f"version {version} at {event.timestamp.isoformat()} is earlier than "
                        f"version {before.version} at {before.timestamp.isoformat()}",
                    )
                )
            before.version, before.timestamp = version, event.timestamp
        if isinstance(event, Iteration.PhaseChanged):
            before.phase = event.phase
        elif isinstance(event, Iteration.RecordSaved):
            before.saved = True
        if notification_id <= self.fold_until:
            self._fold.apply(event)
            if isinstance(event, Iteration.MetricsRecorded):
                self._note_plain_tokens(event)

    def _note_plain_tokens(self, event: Iteration.MetricsRecorded) -> None:
        """Tokens added as plain metrics (by `update_metrics`, or by `record_usage` before calls were events):
        the part of a token metric that no recorded call accounts for. Every token metric's name ends in
        `_tokens` (`<phase>_tokens`, `<phase>_input_tokens`, ...)."""
        for name, amount in event.metrics.items():
            if name.endswith("_tokens"):
                key = (event.originator_id, name)
                self.plain_tokens[key] = self.plain_tokens.get(key, 0) + amount

    def expected_read_models(self) -> ReadModelState:
        """The read models a fresh fold of the events up to the views' position gives."""
        return ReadModelState.of_fold(self._fold.changes)

    def check_records(self, record_ids: Iterable[UUID], *, require_records: bool = False) -> None:
        """Saved iterations have their record and every record has its iteration and its `RecordSaved`.

        With `require_records` (host policy) every completed iteration must have its record too.
        """
        records = set(record_ids)
        for iid, seen in self.seen.items():
            if iid in records and not seen.saved:
                self.problems.append(
                    Problem(check="records", iteration_id=iid, detail="has a record but no RecordSaved event")
                )
            elif iid not in records and seen.saved:
                self.problems.append(
                    Problem(check="records", iteration_id=iid, detail="was saved but its record is missing")
                )
            elif require_records and iid not in records and seen.phase == Phase.COMPLETED:
                self.problems.append(Problem(check="records", iteration_id=iid, detail="completed without a record"))
        for iid in sorted(records - self.seen.keys()):
            self.problems.append(Problem(check="records", iteration_id=iid, detail="record has no iteration"))


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return bool(a == b)


def _diff_table(
    table: str, expected: Mapping[Any, Any], actual: Mapping[Any, Any], iteration_of: Any
) -> Iterable[Problem]:
    for key in sorted(expected.keys() | actual.keys(), key=str):
        iid = iteration_of(key)
        if key not in actual:
            yield Problem(check="read_models", iteration_id=iid, detail=f"{table} row {key} is missing from the view")
        elif key not in expected:
            yield Problem(
                check="read_models", iteration_id=iid, detail=f"{table} row {key} is in the view but not in the events"
            )
        elif not _close(actual[key], expected[key]):
            yield Problem(
                check="read_models",
                iteration_id=iid,
                detail=f"{table} row {key}: the view has {actual[key]!r}, the events give {expected[key]!r}",
            )


def check_token_totals(
    state: ReadModelState, plain_tokens: Mapping[tuple[UUID, str], Amount], expected: ReadModelState
) -> list[Problem]:
    """Each phase's token metrics (`<phase>_tokens` and the four per-kind ones) in the views (`state`) equal the
    sum of its LLM calls in the views plus what plain metric updates added to them (`plain_tokens`), for every
    (iteration, phase) with a call in the views or in the events (`expected`, a fold of them)."""
    sums: dict[tuple[UUID, str], int] = {}
    for call in state.llm_calls.values():
        if not call.usage_known:
            continue
        counts = LLMUsage(
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cache_creation_input_tokens=call.cache_creation_input_tokens,
            cache_read_input_tokens=call.cache_read_input_tokens,
        ).as_metrics(call.phase)
        for name, amount in counts.items():
            sums[(call.iteration_id, name)] = sums.get((call.iteration_id, name), 0) + amount
    problems: list[Problem] = []
    called = {(c.iteration_id, c.phase) for c in (*state.llm_calls.values(), *expected.llm_calls.values())}
    for iid, phase in sorted(called, key=str):
        for name in token_metric_names(phase):
            calls = sums.get((iid, name), 0)
            plain = plain_tokens.get((iid, name), 0)
            total = state.metrics.get((iid, name))
            if (total is not None or calls or plain) and not _close(total or 0, calls + plain):
                problems.append(
                    Problem(
                        check="token_totals",
                        iteration_id=iid,
                        detail=f"{name} is {total!r} in iteration_metrics, but its LLM calls sum to {calls}"
                        + (f" and plain metric updates added {plain}" if plain else ""),
                    )
                )
    return problems


def _current_fields(row: CurrentPhase) -> dict[str, Any]:
    return row.model_dump()


def diff_read_models(expected: ReadModelState, actual: ReadModelState) -> list[Problem]:
    """Every row where the view differs from a fresh fold, named by table and key."""
    problems: list[Problem] = []
    for iid in sorted(expected.current.keys() | actual.current.keys(), key=str):
        want, have = expected.current.get(iid), actual.current.get(iid)
        if have is None or want is None:
            where = "missing from the view" if have is None else "in the view but not in the events"
            problems.append(Problem(check="read_models", iteration_id=iid, detail=f"iteration_current row {where}"))
            continue
        w, h = _current_fields(want), _current_fields(have)
        for name in w:
            if w[name] != h[name]:
                problems.append(
                    Problem(
                        check="read_models",
                        iteration_id=iid,
                        detail=f"iteration_current.{name}: the view has {h[name]!r}, the events give {w[name]!r}",
                    )
                )
    problems += _diff_table("iteration_metrics", expected.metrics, actual.metrics, lambda k: k[0])
    problems += _diff_table("agent_metrics", expected.agents, actual.agents, lambda _k: None)
    problems += _diff_table("iteration_phase_durations", expected.durations, actual.durations, lambda k: k[0])
    problems += _diff_table("llm_calls", expected.llm_calls, actual.llm_calls, lambda k: k[0])
    return problems
