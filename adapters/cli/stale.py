"""Stale iterations: `itertrack abandon`, and the `--stale DURATION` selection `status` shares with it.

A host killed with SIGKILL (or a lost machine) leaves its iterations `running` with nothing to end them.
`status --stale 30m` lists running iterations with no change (no event) for that long; `abandon` ends them as
`failed`, one `PhaseChanged` event each, written through the tracker like any other change, so `history`
shows who ended the iteration and why.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from itertrack.adapters.cli.common import (
    JsonOption,
    SinceOption,
    StoreOption,
    UntilOption,
    app,
    cli_errors,
    open_tracker,
    out,
    parse_range,
    print_json,
)
from itertrack.adapters.cli.ids import resolve_iteration_id
from itertrack.adapters.cli.progress import caught_up
from itertrack.adapters.cli.terminal import escape_controls
from itertrack.adapters.store.url import DEFAULT_STORE
from itertrack.adapters.views.keeper import ReadModels
from itertrack.domain.model.errors import InvalidInputError, IterationFinishedError
from itertrack.domain.model.phases import Phase, Status
from itertrack.domain.model.state import IterationState
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.projections.rows import CurrentPhase

StaleOption = Annotated[
    str | None,
    typer.Option(
        "--stale",
        metavar="DURATION",
        help="Only running iterations with no change for this long: 90s, 30m, 2h, 1d, 1h30m.",
        show_default=False,
    ),
]

# Running iterations read from the views to find the stale ones (they are filtered here, not in SQL).
RUNNING_SCAN_LIMIT = 1_000_000
# The longest idle time accepted (ten years): anything longer selects nothing and is surely a typo.
MAX_IDLE = timedelta(days=3650)
ABANDONED_BY = "itertrack abandon"

_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def parse_duration(text: str, option: str = "--stale") -> timedelta:
    """A positive duration written as numbers with units d, h, m, s: `90s`, `30m`, `2h`, `1.5d`, `1h30m`.

    Raises `InvalidInputError` naming `option` and `text` for anything else (no unit, a unit twice, zero,
    longer than `MAX_IDLE`).
    """
    compact = text.strip().lower()
    parts = _PART.findall(compact)
    units = [unit for _, unit in parts]
    if not compact or "".join(n + u for n, u in parts) != compact or len(set(units)) != len(units):
        raise InvalidInputError(option, text, "is not a duration such as 90s, 30m, 2h, 1d or 1h30m")
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds <= 0:
        raise InvalidInputError(option, text, "must be longer than zero")
    if seconds > MAX_IDLE.total_seconds():
        raise InvalidInputError(option, text, f"must be at most {MAX_IDLE.days}d")
    return timedelta(seconds=seconds)


def stale_iterations(
    views: ReadModels,
    idle: timedelta,
    now: datetime,
    *,
    agent: str | None = None,
    phase: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[CurrentPhase]:
    """Running iterations (from the read models) whose last event is at least `idle` before `now`, newest first
    (started in [since, until) when given)."""
    cutoff = now - idle
    rows = views.iterations(
        agent=agent, phase=phase, status=Status.RUNNING, limit=RUNNING_SCAN_LIMIT, since=since, until=until
    )
    return [row for row in rows if row.updated_at <= cutoff]


def stale_listing(
    views: ReadModels,
    stale: str,
    now: datetime,
    *,
    agent: str | None = None,
    phase: str | None = None,
    status: Status | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[CurrentPhase]:
    """`status --stale`: `stale_iterations` for the option's text (`InvalidInputError` for a bad duration, or a
    `--status` other than running)."""
    idle = parse_duration(stale)
    if status not in (None, Status.RUNNING):
        raise InvalidInputError("--status", str(status), "--stale lists running iterations only")
    return stale_iterations(views, idle, now, agent=agent, phase=phase, since=since, until=until)


def abandoned_error(state: IterationState) -> str:
    """The error an abandoned iteration is failed with: who ended it and since when it had not changed."""
    return f"abandoned by {ABANDONED_BY}: no change since {state.updated_at.isoformat()}"


@app.command()
def abandon(
    iteration_ids: Annotated[
        list[str] | None, typer.Argument(metavar="ID", help="Running iterations to end (UUIDs).")
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    stale: StaleOption = None,
    as_json: JsonOption = False,
    agent: Annotated[str | None, typer.Option(help="With --stale: only this agent's iterations.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """End running iterations whose host is gone as `failed` (one event each, naming who ended it and why).

    By id: every id must name a running iteration, else nothing is written. With --stale: the running
    iterations with no change for that long (of --agent, started in [--since, --until) when given); one that
    finished or changed since it was listed is skipped.
    """
    with cli_errors(store):
        _check_selection(stale, iteration_ids, agent=agent, since=since, until=until)
        idle = None if stale is None else parse_duration(stale)
        start, end = parse_range(since, until)
        with open_tracker(store, migrate=False) as tracker:
            if idle is None:
                ids = [resolve_iteration_id(tracker, i) for i in iteration_ids or []]
                abandoned: list[dict[str, Any]] = abandon_ids(tracker, ids)
                skipped: list[dict[str, Any]] = []
            else:
                with ReadModels(tracker, background=False, catch_up_on_read=True) as views:
                    caught_up(views, as_json=as_json)
                    listed = stale_iterations(views, idle, tracker.clock.now(), agent=agent, since=start, until=end)
                abandoned, skipped = abandon_stale(tracker, listed, idle)
    if as_json:
        print_json("abandon", {"abandoned": abandoned, "skipped": skipped})
        return
    for row in abandoned:
        out.print(
            escape_controls(
                f"abandoned {row['iteration_id']} (agent {row['agent_id']!r}, iteration {row['iteration_number']}, "
                f"in {row['phase']}, no change since {row['since']})"
            ),
            markup=False,
            highlight=False,
        )
    for row in skipped:  # host text (agent ids, phases, reasons) with its control characters escaped
        out.print(escape_controls(f"skipped {row['iteration_id']}: {row['reason']}"), markup=False, highlight=False)
    if not abandoned and not skipped:
        out.print(f"no running iteration without a change for {stale}", markup=False, highlight=False)


def _check_selection(stale: str | None, ids: list[str] | None, **filters: str | None) -> None:
    """Either ids or --stale; the filters (--agent, --since, --until) only with --stale. `InvalidInputError`
    naming the option otherwise."""
    if stale is not None and ids:
        raise InvalidInputError("--stale", stale, "give either --stale DURATION or iteration ids, not both")
    if stale is None and not ids:
        raise InvalidInputError("iteration_id", None, "give one or more iteration ids, or --stale DURATION")
    if stale is None:
        for option, value in filters.items():
            if value is not None:
                raise InvalidInputError(f"--{option}", value, "selects among stale iterations: give it with --stale")


def abandon_ids(tracker: PerformanceTracker, ids: list[Any]) -> list[dict[str, Any]]:
    """Check that every id is running (else `IterationFinishedError`, nothing written), then end each one."""
    states = [tracker.get_iteration(iid) for iid in ids]
    for state in states:
        if state.status is not Status.RUNNING:
            raise IterationFinishedError(state.id, state.phase, f"abandon (nothing written to {len(ids)} id(s))")
    return [_end(tracker, state) for state in states]


def abandon_stale(
    tracker: PerformanceTracker, listed: list[CurrentPhase], idle: timedelta
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """End each listed iteration still stale in the event log itself; skip, with the reason, any other."""
    abandoned: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for row in listed:
        # The views may lag the log: the decision is taken on the iteration's own events.
        state = tracker.get_iteration(row.id)
        if state.status is not Status.RUNNING:
            skipped.append({"iteration_id": str(state.id), "reason": f"finished since it was listed ({state.phase})"})
            continue
        if state.updated_at > tracker.clock.now() - idle:
            skipped.append(
                {"iteration_id": str(state.id), "reason": f"changed since it was listed ({state.updated_at})"}
            )
            continue
        try:
            abandoned.append(_end(tracker, state))
        except IterationFinishedError:
            # Its host finished it between the check and the write: its own ending stands.
            skipped.append({"iteration_id": str(state.id), "reason": "finished by its host meanwhile"})
    return abandoned, skipped


def _end(tracker: PerformanceTracker, state: IterationState) -> dict[str, Any]:
    error = abandoned_error(state)
    tracker.update_phase(state.id, Phase.FAILED, error=error)
    return {
        "iteration_id": str(state.id),
        "agent_id": state.agent_id,
        "iteration_number": state.iteration_number,
        "phase": state.phase,
        "since": state.updated_at,
        "error": error,
    }
