"""`itertrack report --html`: the report as one self-contained page, rendered with the dashboard's Jinja2
templates and Vega-Lite charts (adapters/web), the vendored JavaScript inlined: it opens from a file with no
network, and its Content-Security-Policy runs only those scripts and fetches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from itertrack.adapters.web import charts
from itertrack.adapters.web.encode import jsonable
from itertrack.adapters.web.filters import Filters as PageFilters
from itertrack.adapters.web.filters import iso
from itertrack.adapters.web.pages import Dashboard
from itertrack.adapters.web.templating import environment, inline_assets
from itertrack.adapters.web.units import human_count, human_duration, human_usd, seconds_unit
from itertrack.domain.model.phases import TERMINAL_PHASES, Status
from itertrack.projections.costing import CostReport, unpriced_text
from itertrack.projections.report import Report

# The cost sections the page shows (the report's by_iteration section is for --json and the terminal).
COST_SECTIONS = ("by_phase", "by_agent", "by_model")


def render_html(
    report: Report,
    dashboard: Dashboard,
    timeline: Sequence[UUID],
    costs: Mapping[str, CostReport] | None = None,
) -> str:
    """The report page: totals, time and tokens per phase, a phase timeline of the `timeline` iterations,
    failures by phase and error, per agent time, tokens, cost and success over iteration number (rolling
    median, fitted trend, and the trend stated with its 95% interval), and the LLM cost sections of `costs`
    (name -> cost report). The agents and failures are the dashboard's pages' data (`dashboard`), under the
    report's filters. Returns the HTML (UTF-8 text, about 0.85 MB of it the inlined JavaScript)."""
    f = report.filters
    filters = PageFilters(agent=f.agent, since=f.since, until=f.until)
    agents = jsonable(dashboard.agents(filters))["agents"]
    failures = jsonable(dashboard.failures(filters))
    rows = [_timeline_row(dashboard.iteration(iid)) for iid in timeline]
    specs: dict[str, Any] = {}
    if report.phases:
        unit, scale = seconds_unit([p.time_ms.mean / 1000 for p in report.phases])
        specs["phase-time"] = charts.phase_time_chart([_phase_times(p, scale) for p in report.phases], unit)
        tokens = [{"phase": p.phase, "tokens": p.tokens_per_iteration} for p in report.phases if p.tokens_total]
        if tokens:
            specs["phase-tokens"] = charts.phase_tokens_chart(tokens)
    if any(r["stays"] for r in rows):
        longest = max(s["end_s"] for r in rows for s in r["stays"])
        unit, scale = seconds_unit([longest])
        specs["timeline"] = charts.timelines_chart(rows, unit, scale)
    if failures["groups"]:
        specs["failures"] = charts.failures_chart(failures["groups"])
    overview = charts.agents_page_charts(agents) if len(agents) > 1 else {}
    per_agent = [charts.agent_charts(a) for a in agents]
    context = {
        "title": "itertrack report",
        "assets": inline_assets(),
        "scope": _scope(report),
        "generated_at": iso(report.generated_at),
        "schema_version": report.schema_version,
        "cards": _cards(report, costs),
        "phases": [_phase_row(p) for p in report.phases],
        "timeline": rows,
        "failures": failures,
        "agents": agents,
        "charts": jsonable(specs),
        "overview": jsonable(overview),
        "per_agent": jsonable(per_agent),
        "costs": [_cost_section(name, costs[name]) for name in COST_SECTIONS if costs and name in costs],
    }
    return environment().get_template("report.html").render(context)


def dollars_by_iteration(cost: CostReport, iterations: Iterable[UUID]) -> dict[UUID, Decimal | None]:
    """The dollars of each of `iterations` from a cost report grouped by iteration (None: no priced call), so the
    dashboard's agents data (`Dashboard.finished_usd`) need not price the same calls again."""
    if cost.by != ("iteration",):
        raise ValueError(f"cost must be grouped by iteration, not {cost.by}")
    usd = {line.group["iteration"]: line.usd for line in cost.lines}
    return {iid: usd.get(str(iid)) for iid in iterations}


def _scope(report: Report) -> str:
    f = report.filters
    parts = [f"agent {f.agent}" if f.agent else "all agents"]
    if f.since:
        parts.append(f"started since {iso(f.since)}")
    if f.until:
        parts.append(f"started before {iso(f.until)}")
    return ", ".join(parts)


def _cards(report: Report, costs: Mapping[str, CostReport] | None) -> list[tuple[str, str]]:
    t = report.totals
    cards = [
        ("iterations", human_count(t.iterations)),
        ("completed", human_count(t.completed)),
        ("failed", human_count(t.failed)),
        ("running", human_count(t.running)),
        ("success rate", "-" if t.success_rate is None else f"{t.success_rate:.1%}"),
        ("tokens", human_count(t.tokens)),
        ("time in phases", human_duration(t.time_ms / 1000)),
    ]
    if costs and "by_phase" in costs:
        total = costs["by_phase"].total
        cards.append(("LLM cost" if total.complete else "LLM cost (priced calls)", human_usd(total.usd)))
    return cards


def _phase_times(p: Any, scale: float) -> dict[str, Any]:
    s = p.time_ms
    return {
        "phase": p.phase,
        "mean": s.mean / 1000 / scale,
        "median": s.p50 / 1000 / scale,
        "p95": s.p95 / 1000 / scale,
        "mean_text": human_duration(s.mean / 1000),
        "median_text": human_duration(s.p50 / 1000),
        "p95_text": human_duration(s.p95 / 1000),
    }


def _phase_row(p: Any) -> dict[str, Any]:
    s = p.time_ms
    return {
        "phase": p.phase,
        "iterations": human_count(p.iterations),
        "total": human_duration(s.total / 1000),
        "mean": human_duration(s.mean / 1000),
        "p50": human_duration(s.p50 / 1000),
        "p95": human_duration(s.p95 / 1000),
        "max": human_duration(s.max / 1000),
        "tokens": human_count(p.tokens_total),
        "tokens_per_iteration": human_count(p.tokens_per_iteration),
    }


def _timeline_row(page: Mapping[str, Any]) -> dict[str, Any]:
    """One iteration of the timeline from the dashboard's iteration page data: its stays in non-terminal phases
    as seconds since it started, the phase it failed in, and where and why it failed."""
    it = page["iteration"]
    iid = str(it["id"])
    origin: datetime = it["started_at"]
    failed = it["status"] is Status.FAILED
    stays = page["stays"]
    failed_at = next((s["entered_at"] for s in stays if s["phase"] == "failed"), None) if failed else None
    shown = [s for s in stays if s["phase"] not in TERMINAL_PHASES]
    drawn = [
        {
            "phase": s["phase"],
            "version": s["version"],
            "start_s": max(0.0, (s["entered_at"] - origin).total_seconds()),
            "end_s": max(0.0, (s["left_at"] - origin).total_seconds()),
            "text": s["text"],
            "failed_in": failed and i == len(shown) - 1,
        }
        for i, s in enumerate(shown)
    ]
    end = it["finished_at"]
    return {
        "label": f"{it['agent_id']} #{it['iteration_number']} · {iid[:8]}",
        "iteration_id": iid,
        "agent_id": it["agent_id"],
        "iteration_number": it["iteration_number"],
        "status": str(it["status"]),
        "duration": human_duration(((end or stays[-1]["left_at"]) - origin).total_seconds()),
        "failed_in": drawn[-1]["phase"] if failed and drawn else None,
        "error": it["error"],
        "stays": drawn,
        "failed_at_s": None if failed_at is None else max(0.0, (failed_at - origin).total_seconds()),
    }


def _cost_section(name: str, cost: CostReport) -> dict[str, Any]:
    """A cost report as a table: a row per group, the total, and notes (price table, what is unpriced)."""
    rows = [[*(line.group.get(key) or "(none)" for key in cost.by), *_cost_cells(line)] for line in cost.lines]
    rows.append(["total", *([""] * (len(cost.by) - 1)), *_cost_cells(cost.total)])
    notes = f"Prices {cost.table_version}."
    if cost.unattributed_tokens:
        notes += f" {cost.unattributed_tokens:,} tokens have no recorded call (no model: unpriced)."
    if not cost.total.complete:
        notes += " A lower bound: some calls or tokens have no price."
    return {
        "title": f"LLM cost {name.replace('_', ' ')}",
        "headers": [*cost.by, "calls", "tokens", "cost", "unpriced"],
        "rows": rows,
        "notes": notes,
    }


def _cost_cells(line: Any) -> list[str]:
    return [human_count(line.calls), human_count(line.tokens), human_usd(line.usd), unpriced_text(line)]
