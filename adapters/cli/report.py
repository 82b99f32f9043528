"""`itertrack report`: per-phase, failure and per-agent analytics as a table, JSON or one HTML page."""

from __future__ import annotations

import errno
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated
from uuid import UUID

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
from itertrack.adapters.cli.cost_tables import print_cost
from itertrack.adapters.cli.ids import resolve_iteration_id
from itertrack.adapters.cli.progress import caught_up
from itertrack.adapters.cli.terminal import shown
from itertrack.adapters.documents.analytics import ReportData
from itertrack.adapters.prices import load_price_table
from itertrack.adapters.report.html import dollars_by_iteration, render_html
from itertrack.adapters.store.url import DEFAULT_STORE
from itertrack.adapters.views.keeper import ReadModels
from itertrack.adapters.web.pages import Dashboard
from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.phases import Status
from itertrack.projections.costing import Call, CostReport, calls_of_rows, cost_report, unattributed_tokens
from itertrack.projections.report import Filters, Report, ReportRows, SlopeFit, build_report


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
    """Where time, tokens and dollars go, which phases fail, and how each agent trends (from the read models)."""
    with cli_errors(store):
        if as_json and html is not None:
            raise InvalidInputError("--html", str(html), "give either --json or --html, not both")
        if html is not None:
            check_output(html, "--html")
        filters = Filters(
            agent=agent,
            since=None if since is None else parse_instant(since, "since"),
            until=None if until is None else parse_instant(until, "until"),
        )
        with open_tracker(store, migrate=False) as tracker, ReadModels(tracker, background=False) as views:
            caught_up(views, as_json=as_json)
            views.sync()
            chosen = [resolve_iteration_id(tracker, i, "--timeline") for i in timeline or []]
            rows = views.view.report_rows(filters.agent, filters.since, filters.until)
            result = build_report(rows, tracker.catalog.names, tracker.clock.now(), filters)
            costs = report_costs(views, rows, tracker.catalog.names)
            if html is not None:
                ids = chosen or ([it.id for it in rows.iterations[-timeline_count:]] if timeline_count else [])
                dashboard = Dashboard(views, load_price_table())
                finished = [it.id for it in rows.iterations if it.status is not Status.RUNNING]
                dashboard.finished_usd.update(dollars_by_iteration(costs["by_iteration"], finished))
                page = render_html(result, dashboard, ids, costs)
        if html is not None:
            write_output(html, page, "--html")
            out.print(Text.assemble("wrote ", shown(html), f" ({len(page):,} bytes)"))
            return
    if as_json:
        print_json("report", ReportData.of(result, costs))
        return
    print_report(result)
    shown_costs = [(name, c) for name, c in costs.items() if c.total.calls or c.unattributed_tokens]
    for index, (name, cost) in enumerate(shown_costs):
        last = index == len(shown_costs) - 1
        print_cost(cost, f"LLM cost {name.replace('_', ' ')}", notes=last, most=10 if name == "by_iteration" else None)


def check_output(path: Path, option: str) -> None:
    """Before any work: refuse (as `write_output` would) a path whose directory is missing or that is a
    directory; other failures (permission, a full disk) are only known when writing."""
    parent = path.parent
    if path.is_dir():
        problem: int | None = errno.EISDIR
    elif parent.is_dir():
        problem = None
    else:
        problem = errno.ENOTDIR if parent.exists() else errno.ENOENT
    if problem is not None:
        raise InvalidInputError(option, str(path), f"cannot be written: {os.strerror(problem)}")


def write_output(path: Path, text: str, option: str) -> None:
    """Write `text` (UTF-8) to the file `option` names; `InvalidInputError` naming the option, the path and the
    OS's reason when it cannot be (no such directory, a directory, no permission, a full disk)."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise InvalidInputError(option, str(path), f"cannot be written: {reason}") from None


# The report's cost sections: name -> how the calls are grouped.
COST_SECTIONS: dict[str, tuple[str, ...]] = {
    "by_phase": ("phase",),
    "by_agent": ("agent",),
    "by_model": ("provider", "model"),
    "by_iteration": ("iteration",),
}


def report_costs(views: ReadModels, rows: ReportRows, phases: Sequence[str]) -> dict[str, CostReport]:
    """The cost of the report's iterations' LLM calls, each at its date's prices, by phase, agent, model and
    iteration; tokens in their token metrics no recorded call explains are counted as unattributed."""
    table = load_price_table()
    ids = {it.id for it in rows.iterations}
    agents = {it.agent_id for it in rows.iterations}
    agent = next(iter(agents)) if len(agents) == 1 else None
    calls = [c for c in calls_of_rows(views.view.llm_calls(agent=agent)) if c.iteration_id in ids]
    by_iteration: dict[UUID, list[Call]] = defaultdict(list)  # once: a scan of every call per iteration is n^2
    for c in calls:
        by_iteration[c.iteration_id].append(c)
    extra = sum(unattributed_tokens(rows.tokens.get(iid, {}), by_iteration.get(iid, []), phases) for iid in ids)
    return {name: cost_report(calls, table, by, unattributed_tokens=extra) for name, by in COST_SECTIONS.items()}


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
    agents = Table(title="Per agent (trend: least-squares slope over iteration numbers, 95% interval)")
    for column in ("agent", "iterations", "success", "time s", "tokens", "ms/iteration no.", "tokens/iteration no."):
        agents.add_column(column, justify="left" if column == "agent" else "right")
    for a in result.agents:
        agents.add_row(
            shown(a.agent_id),
            f"{a.iterations:,}",
            "-" if a.success_rate is None else f"{a.success_rate:.0%}",
            f"{a.time_ms / 1000:,.1f}",
            f"{a.tokens:,.0f}",
            _slope_text(a.trend.time_ms_per_iteration_number),
            _slope_text(a.trend.tokens_per_iteration_number),
        )
    out.print(agents)


def _slope_text(fit: SlopeFit | None) -> str:
    """A slope with its 95% interval ("+12 (-3 to +27)"), "-" when there are too few iterations."""
    if fit is None:
        return "-"
    if fit.low is None or fit.high is None:
        return f"{fit.slope:+,.0f}"
    return f"{fit.slope:+,.0f} ({fit.low:+,.0f} to {fit.high:+,.0f})"
