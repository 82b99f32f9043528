"""The report as one self-contained HTML page with inline SVG charts (no scripts, no external files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from itertrack.projections.costing import CostReport, format_usd, unpriced_text
from itertrack.projections.report import Report
from itertrack.projections.timeline import Stay

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]
WIDTH = 860


class GanttRow(BaseModel):
    """One iteration's stays, for the phase timeline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iteration_id: UUID
    label: str
    stays: tuple[Stay, ...]
    now: datetime


def _color(phase: str, phases: Sequence[str]) -> str:
    index = phases.index(phase) if phase in phases else len(phases) + sum(map(ord, phase))
    return PALETTE[index % len(PALETTE)]


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def bar_chart(title: str, rows: Sequence[tuple[str, float, float | None]], unit: str, phases: Sequence[str]) -> str:
    """Horizontal bars (value) with an optional whisker (e.g. p95)."""
    if not rows:
        return f"<h3>{escape(title)}</h3><p class='empty'>No data.</p>"
    top = max(max(v, w or 0) for _, v, w in rows) or 1.0
    label_w, bar_w, row_h = 190, WIDTH - 300, 26
    parts = [f"<h3>{escape(title)}</h3>", f"<svg role='img' width='{WIDTH}' height='{row_h * len(rows) + 10}'>"]
    for i, (name, value, whisker) in enumerate(rows):
        y = 5 + i * row_h
        w = bar_w * value / top
        parts.append(f"<text x='{label_w - 8}' y='{y + 16}' text-anchor='end'>{escape(name)}</text>")
        parts.append(
            f"<rect x='{label_w}' y='{y + 3}' width='{w:.1f}' height='{row_h - 8}' fill='{_color(name, phases)}'>"
            f"<title>{escape(name)}: {_fmt(value)} {escape(unit)}</title></rect>"
        )
        if whisker is not None:
            x = label_w + bar_w * whisker / top
            parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{y + 1}' y2='{y + row_h - 3}' class='whisker'/>")
        parts.append(f"<text x='{label_w + w + 6:.1f}' y='{y + 16}' class='value'>{_fmt(value)} {escape(unit)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def gantt_chart(rows: Sequence[GanttRow], phases: Sequence[str]) -> str:
    """One row per iteration, a bar per stay, on a shared axis of time since each iteration started."""
    if not rows:
        return "<p class='empty'>No iterations.</p>"
    spans = [((r.stays[-1].end or r.now) - r.stays[0].start).total_seconds() for r in rows if r.stays]
    longest = max(spans, default=1.0) or 1.0
    label_w, plot_w, row_h = 300, WIDTH - 320, 24
    parts = [
        "<p class='meta'>Seconds since each iteration started; hover a bar for its phase and length.</p>",
        f"<svg role='img' width='{WIDTH}' height='{row_h * len(rows) + 40}'>",
    ]
    for i, row in enumerate(rows):
        y = 5 + i * row_h
        parts.append(f"<text x='{label_w - 8}' y='{y + 15}' text-anchor='end'>{escape(row.label)}</text>")
        if not row.stays:
            continue
        origin = row.stays[0].start
        for stay in row.stays:
            start = (stay.start - origin).total_seconds()
            end = ((stay.end or row.now) - origin).total_seconds()
            x = label_w + plot_w * start / longest
            w = max(1.0, plot_w * (end - start) / longest)
            parts.append(
                f"<rect x='{x:.1f}' y='{y + 3}' width='{w:.1f}' height='{row_h - 7}' "
                f"fill='{_color(stay.phase, phases)}'>"
                f"<title>{escape(stay.phase)}: {end - start:,.1f} s</title></rect>"
            )
    axis_y = 5 + len(rows) * row_h + 4
    for k in range(6):
        x = label_w + plot_w * k / 5
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='5' y2='{axis_y}' class='grid'/>")
        parts.append(f"<text x='{x:.1f}' y='{axis_y + 14}' text-anchor='middle'>{longest * k / 5:,.0f}</text>")
    parts.append("</svg>")
    legend = "".join(
        f"<span class='key'><i style='background:{_color(p, phases)}'></i>{escape(p)}</span>" for p in phases
    )
    return "".join(parts) + f"<p class='legend'>{legend}</p>"


def trend_chart(title: str, series: dict[str, list[tuple[int, float]]], unit: str) -> str:
    """One line per agent: a value per iteration number."""
    points = [p for line in series.values() for p in line]
    if len(points) < 2:
        return f"<h3>{escape(title)}</h3><p class='empty'>Not enough finished iterations.</p>"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y1 = min(xs), max(xs), max(ys) or 1.0
    left, plot_w, plot_h = 70, WIDTH - 220, 220
    parts = [f"<h3>{escape(title)}</h3>", f"<svg role='img' width='{WIDTH}' height='{plot_h + 50}'>"]
    for k in range(5):
        y = 10 + plot_h - plot_h * k / 4
        parts.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{y:.1f}' y2='{y:.1f}' class='grid'/>")
        parts.append(f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end'>{_fmt(y1 * k / 4)}</text>")
    for i, (agent, line) in enumerate(sorted(series.items())):
        color = PALETTE[i % len(PALETTE)]
        coords = [
            (left + plot_w * ((x - x0) / ((x1 - x0) or 1)), 10 + plot_h - plot_h * (y / y1)) for x, y in sorted(line)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f"<polyline points='{path}' fill='none' stroke='{color}' stroke-width='2'/>")
        for (x, y), (n, v) in zip(coords, sorted(line), strict=True):
            parts.append(
                f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{color}'>"
                f"<title>{escape(agent)} #{n}: {_fmt(v)} {escape(unit)}</title></circle>"
            )
        parts.append(f"<text x='{left + plot_w + 12}' y='{24 + 18 * i}' fill='{color}'>{escape(agent)}</text>")
    step = max(1, (x1 - x0) // 10)
    for n in range(x0, x1 + 1, step):
        x = left + plot_w * ((n - x0) / ((x1 - x0) or 1))
        parts.append(f"<text x='{x:.1f}' y='{plot_h + 26}' text-anchor='middle'>{n}</text>")
    parts.append(f"<text x='{left + plot_w / 2}' y='{plot_h + 46}' text-anchor='middle'>iteration number</text>")
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _arrow(flag: bool | None, good: str, bad: str) -> str:
    return "-" if flag is None else (good if flag else bad)


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:900px;color:#222}
h1{font-size:22px;margin-bottom:4px} h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px} .meta{color:#666}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:140px}
.card b{display:block;font-size:20px} table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:right} th:first-child,td:first-child{text-align:left}
svg text{font-size:12px;fill:#333} svg .value{fill:#555} .grid{stroke:#eee} .whisker{stroke:#222;stroke-width:2}
.legend .key{margin-right:14px;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
.empty{color:#888}
"""


def cost_table(cost: CostReport) -> str:
    """A cost report as an HTML table: a row per group, the total, the price table's version, what is unpriced."""
    rows = [
        [
            *(line.group.get(name) or "(none)" for name in cost.by),
            f"{line.calls:,}",
            f"{line.tokens:,}",
            format_usd(line.usd),
            unpriced_text(line),
        ]
        for line in cost.lines
    ]
    t = cost.total
    rows.append(
        ["total", *([""] * (len(cost.by) - 1)), f"{t.calls:,}", f"{t.tokens:,}", format_usd(t.usd), unpriced_text(t)]
    )
    notes = f"prices {cost.table_version}"
    if cost.unattributed_tokens:
        notes += f"; {cost.unattributed_tokens:,} tokens have no recorded call (no model: unpriced)"
    if not t.complete:
        notes += "; a lower bound: some calls or tokens have no price"
    table = _table([*cost.by, "calls", "tokens", "cost", "unpriced"], rows)
    return f"{table}<p class='meta'>{escape(notes)}</p>"


def render_html(
    report: Report,
    gantt: Sequence[GanttRow],
    series: dict[str, list[tuple[int, float, float]]],
    costs: Mapping[str, CostReport] | None = None,
) -> str:
    """The report page (with its LLM cost sections when `costs` is given: name -> cost report)."""
    phases = [p.phase for p in report.phases]
    t = report.totals
    f = report.filters
    scope = ", ".join(
        part
        for part in (
            f"agent {f.agent}" if f.agent else "all agents",
            f"since {f.since.isoformat()}" if f.since else "",
            f"until {f.until.isoformat()}" if f.until else "",
        )
        if part
    )
    cards = "".join(
        f"<div class='card'>{escape(k)}<b>{escape(v)}</b></div>"
        for k, v in (
            ("iterations", f"{t.iterations:,}"),
            ("success rate", _pct(t.success_rate)),
            ("failed", f"{t.failed:,}"),
            ("tokens", f"{t.tokens:,.0f}"),
            ("time in phases", f"{t.time_ms / 1000:,.1f} s"),
        )
    )
    time_series = {a: [(n, ms / 1000) for n, ms, _ in points] for a, points in series.items()}
    token_series = {a: [(n, tokens) for n, _, tokens in points] for a, points in series.items()}
    time_rows = [(p.phase, p.time_ms.mean, p.time_ms.p95) for p in report.phases]
    token_rows = [(p.phase, p.tokens_total, None) for p in report.phases if p.tokens_total]
    phase_table = _table(
        ["phase", "iterations", "mean ms", "p50 ms", "p95 ms", "max ms", "tokens", "tokens / iteration"],
        [
            [
                p.phase,
                f"{p.iterations:,}",
                _fmt(p.time_ms.mean),
                _fmt(p.time_ms.p50),
                _fmt(p.time_ms.p95),
                _fmt(p.time_ms.max),
                f"{p.tokens_total:,.0f}",
                _fmt(p.tokens_per_iteration),
            ]
            for p in report.phases
        ],
    )
    failure_table = _table(
        ["phase", "failures", "most frequent errors"],
        [[x.phase, f"{x.count:,}", "; ".join(f"{e.error} ({e.count})" for e in x.errors)] for x in report.failures],
    )
    agent_table = _table(
        ["agent", "iterations", "success rate", "time s", "tokens", "faster?", "cheaper?", "more successful?"],
        [
            [
                a.agent_id,
                f"{a.iterations:,}",
                _pct(a.success_rate),
                f"{a.time_ms / 1000:,.1f}",
                f"{a.tokens:,.0f}",
                _arrow(a.trend.faster, "yes", "no"),
                _arrow(a.trend.cheaper, "yes", "no"),
                _arrow(a.trend.more_successful, "yes", "no"),
            ]
            for a in report.agents
        ],
    )
    shown_costs = [(name, c) for name, c in (costs or {}).items() if name != "by_iteration"]
    cost_sections = "".join(
        f"<h2>LLM cost {escape(name.replace('_', ' '))}</h2>{cost_table(c)}" for name, c in shown_costs
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>itertrack report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body>
<h1>itertrack report</h1>
<p class="meta">{escape(scope)} &middot; generated {escape(report.generated_at.isoformat(timespec="seconds"))}
&middot; {escape(report.schema_version)}</p>
<div class="cards">{cards}</div>
<h2>Where the time and tokens go</h2>
{bar_chart("Mean time per phase (bar) and p95 (line)", time_rows, "ms", phases)}
{bar_chart("Tokens per phase", token_rows, "tokens", phases)}
{phase_table}
<h2>Phase timeline</h2>
{gantt_chart(gantt, phases)}
<h2>Failures</h2>
{failure_table if report.failures else "<p class='empty'>No failures.</p>"}
<h2>Agents</h2>
{agent_table}
{trend_chart("Time per finished iteration, by iteration number", time_series, "s")}
{trend_chart("Tokens per finished iteration, by iteration number", token_series, "tokens")}
{cost_sections}
</body></html>
"""
