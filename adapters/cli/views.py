"""`itertrack project`, `status` and `metrics`: keeping and reading the read models."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.cli.common import (
    JsonOption,
    SinceOption,
    StoreOption,
    UntilOption,
    app,
    cli_errors,
    err,
    open_tracker,
    out,
    parse_range,
    print_json,
    stderr_log,
)
from itertrack.adapters.cli.ids import resolve_iteration_id
from itertrack.adapters.cli.progress import caught_up, counting, waiting
from itertrack.adapters.cli.stale import StaleOption, stale_listing
from itertrack.adapters.cli.terminal import shown
from itertrack.adapters.documents.analytics import Filters, MetricsData
from itertrack.adapters.documents.iterations import IterationRow, StatusData, StatusFilters
from itertrack.adapters.store.url import DEFAULT_STORE, redact
from itertrack.adapters.views.follower import Follower
from itertrack.adapters.views.keeper import ReadModels, lock_for, view_for, view_position
from itertrack.adapters.views.lock import ProjectionLock
from itertrack.adapters.views.runner import ViewRunner, catch_up
from itertrack.adapters.views.tables import ViewTables
from itertrack.adapters.views.verify import verify_iteration, verify_store
from itertrack.domain.model.errors import UnknownPhaseError
from itertrack.domain.model.phases import Status
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.projections.projection import DEFAULT_BATCH_SIZE
from itertrack.projections.rows import AgentMetric
from itertrack.projections.verification import Problem

CatchUpOption = Annotated[
    bool,
    typer.Option("--catch-up/--no-catch-up", help="Apply pending events first (--no-catch-up for read-only roles)."),
]
# How long `project --wait` waits for the running projection to stop (seconds).
LOCK_WAIT_S = 3600.0
BatchOption = Annotated[int, typer.Option(min=1, max=100_000, help="Events applied per transaction.")]


@app.command()
def project(
    store: StoreOption = DEFAULT_STORE,
    follow: Annotated[bool, typer.Option("--follow", help="Keep the read models current until interrupted.")] = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Drop the read models and rebuild them from zero.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for another running projection to stop.")] = False,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
) -> None:
    """Bring the read models up to date (once, from zero with --rebuild, or continuously with --follow)."""
    with cli_errors(store), open_tracker(store, migrate=False) as tracker:
        lock = lock_for(store_of(tracker).factory)
        if wait:
            with waiting("waiting for the running projection to stop", LOCK_WAIT_S):
                lock.acquire(wait=True, timeout=LOCK_WAIT_S)
        else:
            lock.acquire()
        try:
            view = view_for(store_of(tracker).factory)
            if rebuild:
                view.reset()
            todo = view_position(tracker, view)
            what = "rebuilding the read models" if rebuild else "catching up the read models"
            with counting(what, todo.latest - todo.applied) as advance:
                applied = catch_up(tracker, view, batch_size=batch_size, on_batch=advance)
            done = view_position(tracker, view)
            out.print(
                f"{'rebuilt' if rebuild else 'caught up'}: applied {applied} events "
                f"(position {todo.applied} -> {done.applied}, log at {done.latest})"
            )
            if follow:
                _follow(tracker, view, store, batch_size, lock)
        finally:
            lock.release()


def _follow(tracker: PerformanceTracker, view: ViewTables, store: str, batch_size: int, lock: ProjectionLock) -> None:
    """Keep the views' runner going until SIGINT or SIGTERM, through outages (see `Follower`).

    Each outage is one warning line on stderr when it starts and one line when the store is back; a
    failure waiting cannot fix ends the command with its typed error (one line, via `cli_errors`).
    """
    follower = Follower(
        lambda: ViewRunner(tracker, view, batch_size=batch_size),
        name="follow",
        shown=redact(store),
        log=stderr_log("itertrack.follow"),
        before_restart=lock.keep,
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        err.print(f"received {signal.Signals(signum).name}, stopping")
        follower.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        out.print(Text.assemble("following ", shown(redact(store)), " (Ctrl-C to stop)"))
        sys.stdout.flush()
        follower.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    out.print("stopped")


@app.command()
def status(
    store: StoreOption = DEFAULT_STORE,
    agent: Annotated[str | None, typer.Option(help="Only this agent's iterations.")] = None,
    phase: Annotated[str | None, typer.Option(help="Only iterations now in this phase.")] = None,
    status_: Annotated[Status | None, typer.Option("--status", help="Only iterations with this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="At most this many rows.")] = 50,
    as_json: JsonOption = False,
    catch_up: CatchUpOption = True,
    stale: StaleOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Iterations and where each one is now, newest first (from the read models).

    With --stale DURATION: only running iterations with no change for that long (see `itertrack abandon`).
    """
    with (
        cli_errors(store),
        open_tracker(store, migrate=False) as tracker,
        ReadModels(tracker, background=False, catch_up_on_read=catch_up) as views,
    ):
        start, end = parse_range(since, until)
        caught_up(views, as_json=as_json)
        if phase is not None:
            check_phase_option(tracker, views, phase)
        if stale is None:
            rows = views.iterations(agent=agent, phase=phase, status=status_, limit=limit, since=start, until=end)
        else:
            now = tracker.clock.now()
            rows = stale_listing(views, stale, now, agent=agent, phase=phase, status=status_, since=start, until=end)[
                :limit
            ]
    if as_json:
        filters = StatusFilters(
            agent=agent, phase=phase, status=status_, since=start, until=end, stale=stale, limit=limit
        )
        print_json("status", StatusData(filters=filters, iterations=[IterationRow.of(row) for row in rows]))
        return
    table = Table(title=f"Iterations ({len(rows)} shown)")
    for column in ("id", "agent", "#", "phase", "status", "in phase since", "updated", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            str(row.id),
            shown(row.agent_id),
            str(row.iteration_number),
            shown(row.phase),
            row.status.value,
            row.phase_entered_at.strftime("%Y-%m-%d %H:%M:%S"),
            row.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            shown(row.error or ""),
        )
    out.print(table)


def check_phase_option(tracker: PerformanceTracker, views: ReadModels, phase: str) -> None:
    """Refuse a `--phase` that is neither one of the tracker's phases nor one an iteration of the store has been
    in (a host-registered one): `UnknownPhaseError` naming `--phase`, the value and the phases known."""
    if phase in tracker.catalog.names:
        return
    if views.catch_up_on_read:
        views.sync()
    seen = views.view.phases()
    if phase not in seen:
        known = ", ".join(dict.fromkeys([*tracker.catalog.names, *seen]))
        raise UnknownPhaseError("--phase", phase, f"is not a phase of this store; known: {known}")


@app.command()
def metrics(
    store: StoreOption = DEFAULT_STORE,
    agent: Annotated[str | None, typer.Option(help="One agent's totals instead of all agents'.")] = None,
    as_json: JsonOption = False,
    catch_up: CatchUpOption = True,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Cumulative metric totals, across all agents or for one (from the read models); with --since or --until,
    over the iterations started in that range."""
    with (
        cli_errors(store),
        open_tracker(store, migrate=False) as tracker,
        ReadModels(tracker, background=False, catch_up_on_read=catch_up) as views,
    ):
        start, end = parse_range(since, until)
        caught_up(views, as_json=as_json)
        if start is not None or end is not None:
            rows = views.metrics_started(agent, start, end)
        else:
            rows = views.overall_metrics() if agent is None else views.agent_metrics(agent)
    if as_json:
        print_json("metrics", MetricsData.of(Filters(agent=agent, since=start, until=end), rows))
        return
    out.print(_metrics_table(rows, Text("all agents") if agent is None else Text.assemble("agent ", shown(agent))))


def _metrics_table(rows: list[AgentMetric], whose: Text) -> Table:
    table = Table(title=Text.assemble("Metric totals, ", whose))
    table.add_column("metric")
    table.add_column("total", justify="right")
    table.add_column("iterations", justify="right")
    for row in rows:
        table.add_row(shown(row.metric), f"{row.total:,}", f"{row.iterations:,}")
    return table


def _advance(tracker: PerformanceTracker, as_json: bool) -> str | None:
    """Catch the read models up as `status` does; the error that stops them, if one does."""
    try:
        with ReadModels(tracker, background=False) as views:
            caught_up(views, as_json=as_json)
            views.sync()
    except Exception as e:  # whatever stops the views is what verify reports
        return f"{type(e).__name__}: {e}"
    return None


@app.command()
def verify(
    iteration_id: Annotated[str | None, typer.Argument(help="Check only this iteration.")] = None,
    store: StoreOption = DEFAULT_STORE,
    require_records: Annotated[
        bool,
        typer.Option(
            "--require-records",
            help="Host policy: every completed iteration must have its saved record (off: only records "
            "inconsistent with the events are problems).",
        ),
    ] = False,
    catch_up: CatchUpOption = True,
    as_json: JsonOption = False,
) -> None:
    """Check integrity: versions 1..n in time order, records under the same ids, read models equal to the events.

    First the read models are caught up (unless --no-catch-up): a position that cannot advance is a problem,
    with the error that stops it; how far the views are behind the log, and since when, is always reported.
    """
    with cli_errors(store), open_tracker(store, migrate=False) as tracker:
        stopped = _advance(tracker, as_json) if catch_up else None
        report = (
            verify_store(tracker, require_records=require_records)
            if iteration_id is None
            else verify_iteration(tracker, resolve_iteration_id(tracker, iteration_id), require_records=require_records)
        )
        if stopped is not None:
            stuck = Problem(
                check="read_models_advance",
                iteration_id=None,
                detail=f"the read models cannot advance past position {report.read_model_position:,} "
                f"({report.read_models_behind:,} events behind the log since {report.behind_since}): {stopped}",
            )
            report = report.model_copy(update={"ok": False, "problems": (stuck, *report.problems)})
    if as_json:
        print_json("verify", report.model_dump(mode="python"))
    else:
        out.print(
            f"checked {report.events:,} events of {report.iterations:,} iterations, {report.records:,} records and "
            f"{report.read_model_rows:,} read-model rows (position {report.read_model_position:,}) "
            f"in {report.seconds:.2f} s"
            + ("; every completed iteration must have its record (--require-records)" if require_records else "")
        )
        if report.read_models_behind:
            out.print(
                f"read models {report.read_models_behind:,} events behind the log, the oldest from "
                f"{report.behind_since}"
            )
        for problem in report.problems:
            about = "" if problem.iteration_id is None else f" {problem.iteration_id}"
            out.print(Text.assemble(("PROBLEM", "red"), f" {problem.check}{about}: ", shown(problem.detail)))
        out.print("[green]OK[/]: nothing wrong" if report.ok else f"[red]{len(report.problems)} problem(s)[/]")
    if not report.ok:
        raise typer.Exit(1)
