"""`itertrack report`: per-phase, failure and per-agent analytics as a table, JSON or one HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from itertrack.adapters.cli.common import (
    JsonOption,
    StoreOption,
    app,
    cli_errors,
    open_tracker,
    out,
    parse_instant,
    print_json,
)
from itertrack.adapters.cli.terminal import shown
from itertrack.adapters.report.html import GanttRow, render_html
from itertrack.adapters.store.url import DEFAULT_STORE
from itertrack.adapters.views.keeper import ReadModels
from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.text import parse_iteration_id
from itertrack.projections.report import Filters, Report, agent_series, build_report
from itertrack.projections.timeline import phase_stays


@app.command()
def report(
    store: StoreOption = DEFAULT_STORE,
    agent: Annotated[str | None, typer.Option(help="Only this agent's iterations.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Iterations started at or after (ISO 8601; UTC if no offset).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Iterations started before (ISO 8601; UTC if no offset).")] = None,
    as_json: JsonOption = False,
    html: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML page with charts.")] = None,
    timeline: Annotated[
        list[str] | None, typer.Option("--timeline", help="Iteration id for the phase timeline (repeatable).")
    ] = None,
    timeline_count: Annotated[int, typer.Option(min=0, max=200, help="Latest iterations on the timeline.")] = 8,
) -> None:
    """Where time and tokens go, which phases fail, and how each agent trends (from the read models)."""
    with cli_errors(store):
        if as_json and html is not None:
            raise InvalidInputError("--html", str(html), "give either --json or --html, not both")
        filters = Filters(
            agent=agent,
            since=None if since is None else parse_instant(since, "since"),
            until=None if until is None else parse_instant(until, "until"),
        )
        chosen = [parse_iteration_id(i, "--timeline") for i in timeline or []]
        with open_tracker(store, migrate=False) as tracker, ReadModels(tracker, background=False) as views:
            views.sync()
            rows = views.view.report_rows(filters.agent, filters.since, filters.until)
            result = build_report(rows, tracker.catalog.names, tracker.clock.now(), filters)
            if html is not None:
                ids = chosen or ([it.id for it in rows.iterations[-timeline_count:]] if timeline_count else [])
                now = tracker.clock.now()
                gantt = []
                for iid in ids:
                    state = tracker.get_iteration(iid)
                    label = f"{state.agent_id} #{state.iteration_number}"
                    gantt.append(
                        GanttRow(iteration_id=iid, label=label, stays=tuple(phase_stays(tracker.history(iid))), now=now)
                    )
                page = render_html(result, gantt, agent_series(rows, tracker.catalog.names))
        if html is not None:
            html.write_text(page, encoding="utf-8")
            out.print(Text.assemble("wrote ", shown(html), f" ({len(page):,} bytes)"))
            return
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    print_report(result)


def print_report(result: Report) -> None:
    """The report as terminal tables."""
    t = result.totals
    rate = "-" if t.success_rate is None else f"{t.success_rate:.0%}"
    out.print(
        f"{t.iterations:,} iterations: {t.completed:,} completed, {t.failed:,} failed, {t.running:,} running ({rate})"
    )
    phases = Table(title="Per phase (time from event timestamps)")
    for column in ("phase", "iterations", "mean ms", "p50 ms", "p95 ms", "max ms", "tokens", "tokens/iteration"):
        phases.add_column(column, justify="left" if column == "phase" else "right")
    for p in result.phases:
        s = p.time_ms
        phases.add_row(
            shown(p.phase),
            f"{p.iterations:,}",
            f"{s.mean:,.0f}",
            f"{s.p50:,.0f}",
            f"{s.p95:,.0f}",
            f"{s.max:,.0f}",
            f"{p.tokens_total:,.0f}",
            f"{p.tokens_per_iteration:,.0f}",
        )
    out.print(phases)
    if result.failures:
        failures = Table(title="Failures by phase")
        for column in ("phase", "failures", "most frequent errors"):
            failures.add_column(column)
        for f in result.failures:
            errors = Text("; ").join(Text.assemble(shown(e.error), f" ({e.count})") for e in f.errors)
            failures.add_row(shown(f.phase), str(f.count), errors)
        out.print(failures)
    agents = Table(title="Per agent (trend: least-squares slope over iteration numbers)")
    for column in ("agent", "iterations", "success", "time s", "tokens", "ms/iteration no.", "tokens/iteration no."):
        agents.add_column(column, justify="left" if column == "agent" else "right")
    for a in result.agents:
        agents.add_row(
            shown(a.agent_id),
            f"{a.iterations:,}",
            "-" if a.success_rate is None else f"{a.success_rate:.0%}",
            f"{a.time_ms / 1000:,.1f}",
            f"{a.tokens:,.0f}",
            "-" if a.trend.time_ms_per_iteration_number is None else f"{a.trend.time_ms_per_iteration_number:+,.0f}",
            "-" if a.trend.tokens_per_iteration_number is None else f"{a.trend.tokens_per_iteration_number:+,.0f}",
        )
    out.print(agents)
