"""`itertrack demo`, `show`, `history` and `migrate`: the tracker and its event history."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from itertrack.adapters.cli.common import (
    IdArgument,
    JsonOption,
    StoreOption,
    app,
    cli_errors,
    open_tracker,
    out,
    parse_instant,
    print_json,
)
from itertrack.adapters.cli.cost_tables import print_cost
from itertrack.adapters.cli.ids import resolve_iteration_id
from itertrack.adapters.cli.progress import counting
from itertrack.adapters.cli.terminal import shown
from itertrack.adapters.demo.fakes import Scenario, SimulatedClock
from itertrack.adapters.demo.run import run_demo
from itertrack.adapters.documents.analytics import DemoData
from itertrack.adapters.documents.iterations import (
    AsOf,
    Cost,
    Event,
    HistoryData,
    IterationDetail,
    ReplayData,
    Requested,
    SavedRecord,
    ShowData,
    SoFar,
)
from itertrack.adapters.documents.iterations import timeline as document_timeline
from itertrack.adapters.prices import load_price_table
from itertrack.adapters.store.url import DEFAULT_STORE, redact
from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.service.clock import SystemClock
from itertrack.projections.costing import calls_of_events, cost_report, unattributed_tokens
from itertrack.projections.run_summary import RunSummary, summarize


@app.command()
def demo(
    store: StoreOption = DEFAULT_STORE,
    iterations: Annotated[int, typer.Option(min=1, max=1_000_000, help="Iterations to run.")] = 24,
    agents: Annotated[int, typer.Option(min=1, max=10_000, help="Agents to spread them over.")] = 3,
    failure_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of iterations that fail.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Seed of the simulated durations, tokens and failures.")] = 7,
    as_json: JsonOption = False,
) -> None:
    """Run a simulated learning loop (fake LLM, scanner, backtester) and show what was tracked."""
    with cli_errors(store):
        system = SystemClock()
        clock = SimulatedClock(start=system.now(), new_id=system.new_id)
        scenario = Scenario(clock, seed=seed, failure_rate=failure_rate)
        with open_tracker(store, clock=clock, migrate=True) as tracker:
            with counting("tracking iterations", iterations, as_json=as_json) as advance:
                run = run_demo(tracker, scenario, iterations, agents, lambda: advance(1))
            states = [tracker.get_iteration(i) for i in run.iteration_ids]
            summary = summarize(states, tracker.catalog.names)
        if as_json:
            print_json("demo", DemoData.of(redact(store), summary, list(run.iteration_ids), list(run.failed_ids)))
            return
        print_summary(summary, redact(store))
        completed = [s.id for s in states if s.status == "completed"]
        if completed:
            command = Text.assemble(f"itertrack show {completed[0]} --store ", shown(redact(store)), style="bold")
            out.print(Text.assemble("\nOne completed iteration: ", command))
        if run.failed_ids:
            command = Text.assemble(
                f"itertrack history {run.failed_ids[0]} --store ", shown(redact(store)), style="bold"
            )
            out.print(Text.assemble("One failed iteration:    ", command))


def print_summary(summary: RunSummary, store: str) -> None:
    """The demo's closing tables."""
    out.print(
        Text.assemble(
            f"Tracked {summary.iterations} iterations in ",
            shown(store),
            ": ",
            (f"{summary.completed} completed", "green"),
            ", ",
            (f"{summary.failed} failed", "red"),
            f", {summary.running} running",
        )
    )
    table = Table(title="Per phase")
    table.add_column("phase")
    table.add_column("iterations", justify="right")
    table.add_column("mean time (ms)", justify="right")
    table.add_column("tokens", justify="right")
    for row in summary.phases:
        mean = "-" if row.mean_time_ms is None else f"{row.mean_time_ms:,.1f}"
        table.add_row(shown(row.phase), str(row.iterations), mean, f"{row.total_tokens:,}")
    out.print(table)
    if summary.failures:
        failures = Table(title="Failures")
        failures.add_column("phase")
        failures.add_column("error")
        failures.add_column("count", justify="right")
        for f in summary.failures:
            failures.add_row(shown(f.phase), shown(f.error), str(f.count))
        out.print(failures)


@app.command()
def show(
    iteration_id: IdArgument,
    store: StoreOption = DEFAULT_STORE,
    as_json: JsonOption = False,
) -> None:
    """One iteration's state, metric totals, phase timeline and LLM cost (per phase and model, at read time)."""
    with cli_errors(store), open_tracker(store, migrate=False) as tracker:
        state = tracker.get_iteration(resolve_iteration_id(tracker, iteration_id))
        record = tracker.get_record(state.id)
        calls = calls_of_events(state.agent_id, tracker.history(state.id))
        extra = unattributed_tokens(state.metrics, calls, tracker.catalog.names)
        cost = cost_report(calls, load_price_table(), ("phase", "model"), unattributed_tokens=extra)
    timeline = document_timeline(state)
    if as_json:
        print_json(
            "show",
            ShowData(
                iteration=IterationDetail.of(state),
                timeline=timeline,
                record=SavedRecord.of(record),
                cost=Cost.of(cost),
            ),
        )
        return
    summary = Table(show_header=False, title=f"Iteration {state.id}")
    for key, value in (
        ("agent", state.agent_id),
        ("iteration", state.iteration_number),
        ("phase", state.phase),
        ("status", state.status.value),
        ("error", state.error or "-"),
        ("version", state.version),
        ("started", state.started_at.isoformat()),
        ("updated", state.updated_at.isoformat()),
        ("finished", state.finished_at.isoformat() if state.finished_at else "-"),
        ("record saved", "yes" if record is not None else "no"),
    ):
        summary.add_row(key, shown(value))
    out.print(summary)
    metrics = Table(title="Metrics (totals)")
    metrics.add_column("metric")
    metrics.add_column("total", justify="right")
    for name, total in sorted(state.metrics.items()):
        metrics.add_row(shown(name), f"{total:,}")
    out.print(metrics)
    phases = Table(title="Phase timeline")
    for column in ("phase", "entered at", "version", "stayed (ms)"):
        phases.add_column(column)
    for stay in timeline:
        stayed = "-" if stay.time_ms is None else f"{stay.time_ms:,.3f}"
        phases.add_row(shown(stay.phase), stay.entered_at.isoformat(), str(stay.version), stayed)
    out.print(phases)
    if cost.total.calls or cost.unattributed_tokens:
        print_cost(cost, "LLM cost")


def describe(event: Iteration.Event) -> str:
    """What one event changed, in a few words."""
    if isinstance(event, Iteration.Started):
        return f"started: agent {event.agent_id!r}, iteration {event.iteration_number}"
    if isinstance(event, Iteration.PhaseChanged):
        return f"phase -> {event.phase}" + (f" (error: {event.error})" if event.error else "")
    if isinstance(event, Iteration.MetricsRecorded):
        return ", ".join(f"{name} +{amount:,}" for name, amount in event.metrics.items())
    if isinstance(event, Iteration.LLMCallRecorded):
        usage = "usage unknown" if event.usage is None else f"{event.usage.total:,} tokens"
        return f"LLM call in {event.phase}: {event.provider} {event.model or '(model unknown)'}, {usage}"
    if isinstance(event, Iteration.RecordSaved):
        return f"iteration record saved (status {event.status})"
    return type(event).__name__


@app.command()
def history(
    iteration_id: IdArgument,
    store: StoreOption = DEFAULT_STORE,
    as_json: JsonOption = False,
) -> None:
    """One iteration's immutable events, oldest first."""
    with cli_errors(store), open_tracker(store, migrate=False) as tracker:
        events = tracker.history(resolve_iteration_id(tracker, iteration_id))
    if as_json:
        print_json("history", HistoryData(iteration_id=events[0].originator_id, events=[Event.of(e) for e in events]))
        return
    table = Table(title=f"History of {events[0].originator_id}")
    for column in ("version", "time", "event", "change"):
        table.add_column(column)
    for event in events:
        table.add_row(
            str(event.originator_version), event.timestamp.isoformat(), type(event).__name__, shown(describe(event))
        )
    out.print(table)


@app.command()
def migrate(store: StoreOption = DEFAULT_STORE) -> None:
    """Create the store's tables (safe to run from many processes at once)."""
    with cli_errors(store), open_tracker(store, migrate=True):
        pass
    out.print(Text.assemble("store ", shown(redact(store)), " is ready"))


def cost_so_far(metrics: dict[str, int | float], phases: tuple[str, ...]) -> dict[str, int | float]:
    """Total tokens (the `<phase>_tokens` sums) and milliseconds (the `<phase>_time_ms` sums)."""
    return {
        "tokens": sum(metrics.get(f"{p}_tokens", 0) for p in phases),
        "time_ms": sum(metrics.get(f"{p}_time_ms", 0) for p in phases),
    }


@app.command()
def replay(
    iteration_id: IdArgument,
    store: StoreOption = DEFAULT_STORE,
    version: Annotated[int | None, typer.Option(min=1, help="State as of this version.")] = None,
    at: Annotated[str | None, typer.Option(help="State as of this instant (ISO 8601; UTC if no offset).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Audit replay: the events up to a version or an instant, and the iteration's state then."""
    with cli_errors(store), open_tracker(store, migrate=False) as tracker:
        if version is not None and at is not None:
            raise InvalidInputError("at", at, "give either --version or --at, not both")
        instant = None if at is None else parse_instant(at, "at")
        iid = resolve_iteration_id(tracker, iteration_id)
        cut = version if instant is None else tracker.version_at(iid, instant)
        state = tracker.get_iteration(iid, version=cut)
        events = [e for e in tracker.history(state.id) if e.originator_version <= state.version]
        cost = cost_so_far(state.metrics, tracker.catalog.names)
    as_of = events[-1].timestamp
    if as_json:
        print_json(
            "replay",
            ReplayData(
                iteration_id=state.id,
                requested=Requested(version=version, at=instant),
                as_of=AsOf(version=state.version, timestamp=as_of),
                events=[Event.of(e) for e in events],
                iteration=IterationDetail.of(state),
                so_far=SoFar(**cost),
            ),
        )
        return
    for event in events:
        name = type(event).__name__
        out.print(
            Text.assemble(
                f"v{event.originator_version:<4} {event.timestamp.isoformat()}  {name:<16} ", shown(describe(event))
            )
        )
    asked = f" (asked: {instant.isoformat()})" if instant is not None else ""
    out.print(f"\nState of {state.id} as of version {state.version}, {as_of.isoformat()}{asked}:")
    error = (", error: ", shown(state.error)) if state.error else ()
    out.print(Text.assemble("  phase ", shown(state.phase), f" ({state.status.value})", *error))
    out.print(f"  cost so far: {cost['tokens']:,} tokens, {cost['time_ms']:,} ms timed")
    for name, total in sorted(state.metrics.items()):
        out.print(Text.assemble("  ", shown(name), f" = {total:,}"))
