"""`verify`: streams the event log once, checking sequences and records, and compares the views with a fold."""

from __future__ import annotations

import time
from typing import cast
from uuid import UUID

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import view_for
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.projections.verification import (
    EventChecker,
    Problem,
    ReadModelState,
    VerifyReport,
    check_token_totals,
    diff_read_models,
)

PAGE = 10_000


def verify_store(tracker: PerformanceTracker, *, require_records: bool = False) -> VerifyReport:
    """Check every iteration: versions 1..n in time order, records, and every read-model row.

    `require_records` (host policy, off by default): a completed iteration without its record is a problem.
    """
    started = time.perf_counter()
    view = view_for(store_of(tracker).factory)
    # The views and their position are read in one snapshot; the fold stops at that position.
    position, actual = view.snapshot()
    checker = EventChecker(fold_until=position)
    behind, since = 0, None
    start = 0
    while True:
        page = store_of(tracker).recorder.select_notifications(start=start, limit=PAGE, inclusive_of_start=False)
        for notification in page:
            event = cast(Iteration.Event, store_of(tracker).mapper.to_domain_event(notification))
            checker.add(event, notification.id)
            if notification.id > position:
                behind += 1
                since = since or event.timestamp
        if len(page) < PAGE:
            break
        start = page[-1].id
    record_ids = store_of(tracker).records.select_record_ids()
    checker.check_records(record_ids, require_records=require_records)
    expected = checker.expected_read_models()
    problems = checker.problems + diff_read_models(expected, actual)
    problems += check_token_totals(actual, checker.plain_tokens, expected)
    return VerifyReport(
        ok=not problems,
        require_records=require_records,
        events=checker.events,
        iterations=len(checker.seen),
        records=len(record_ids),
        read_model_rows=actual.rows,
        read_model_position=position,
        read_models_behind=behind,
        behind_since=since,
        seconds=round(time.perf_counter() - started, 3),
        problems=tuple(problems),
    )


def verify_iteration(tracker: PerformanceTracker, iteration_id: UUID, *, require_records: bool = False) -> VerifyReport:
    """The same checks for one iteration; its read-model rows are compared once the views have applied it all.

    Raises `IterationNotFoundError` for an unknown id; `require_records` as for `verify_store`.
    """
    started = time.perf_counter()
    events = tracker.history(iteration_id)
    checker = EventChecker(fold_until=10**18)
    for index, event in enumerate(events, start=1):
        checker.add(event, index)
    record_ids = [i for i in store_of(tracker).records.select_record_ids() if i == iteration_id]
    checker.check_records(record_ids, require_records=require_records)
    expected = checker.expected_read_models()
    view = view_for(store_of(tracker).factory)
    actual = ReadModelState()
    problems = list(checker.problems)
    try:
        current = view.current_phase(iteration_id)
    except LookupError:
        current = None
    if current is None or current.last_version >= events[-1].originator_version:
        if current is not None:
            actual.current[iteration_id] = current
        for m in view.metrics(iteration_id):
            actual.metrics[(iteration_id, m.metric)] = m.total
        for d in view.phase_durations(iteration_id):
            actual.durations[(iteration_id, d.phase)] = (d.duration_ms, d.visits)
        for call in view.llm_calls(iteration_id):
            actual.llm_calls[(iteration_id, call.version)] = call
        expected.agents = {}
        problems += diff_read_models(expected, actual)
        problems += check_token_totals(actual, checker.plain_tokens, expected)
    else:
        problems.append(
            Problem(
                check="read_models",
                iteration_id=iteration_id,
                detail=f"not compared: the views have applied version {current.last_version} of "
                f"{events[-1].originator_version} (run `itertrack project`)",
            )
        )
    return VerifyReport(
        ok=not problems,
        require_records=require_records,
        events=checker.events,
        iterations=1,
        records=len(record_ids),
        read_model_rows=actual.rows,
        read_model_position=view.position(),
        seconds=round(time.perf_counter() - started, 3),
        problems=tuple(problems),
    )
