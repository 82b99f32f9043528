"""Vega-Lite specifications of the dashboard's charts (drawn in the browser by the vendored vega-embed).

Every axis has a title with its unit and readable ticks; every colour has a legend entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from itertrack.adapters.web.filters import iso

POINTS, TREND = "iterations", "trend (least squares)"
# Colour-blind-safe (Okabe-Ito): grey points, blue smoothing, vermilion trend.
SERIES_COLOURS = ("#999999", "#0072b2", "#d55e00")
_Y_FORMATS = {"time": ",.3~r", "tokens": ",.3~s", "cost": "$,.4~f", "success": "d"}


def _base(height: int = 220) -> dict[str, Any]:
    return {
        "width": "container",
        "height": height,
        "config": {"axis": {"labelFontSize": 11, "titleFontSize": 12}, "legend": {"labelFontSize": 11}},
    }


def _x_axis() -> dict[str, Any]:
    return {
        "field": "x",
        "type": "quantitative",
        "title": "iteration number",
        "scale": {"zero": False},
        "axis": {"format": "d", "tickMinStep": 1},
    }


def _y_axis(measure: Mapping[str, Any]) -> dict[str, Any]:
    axis: dict[str, Any] = {"format": _Y_FORMATS[measure["key"]], "tickCount": 5}
    y: dict[str, Any] = {"field": "y", "type": "quantitative", "title": measure["title"], "axis": axis}
    if measure["key"] == "success":
        y["scale"] = {"domain": [0, 100]}
    return y


def measure_chart(measure: Mapping[str, Any]) -> dict[str, Any]:
    """One agent's measure over iteration number: points, the rolling median (or mean) and the trend line."""
    smooth = f"{measure['smoothing']} ({measure['window']} iterations)"
    values: list[dict[str, Any]] = []
    for p in measure["points"]:
        values.append({"x": p["x"], "y": p["y"], "series": POINTS})
        values.append({"x": p["x"], "y": p["smooth"], "series": smooth})
    trend = measure["trend"]
    if trend is not None:
        values.append({"x": trend["from"]["x"], "y": trend["from"]["y"], "series": TREND})
        values.append({"x": trend["to"]["x"], "y": trend["to"]["y"], "series": TREND})
    colour = {
        "field": "series",
        "type": "nominal",
        "title": None,
        "scale": {"domain": [POINTS, smooth, TREND], "range": list(SERIES_COLOURS)},
        "legend": {"orient": "bottom"},
    }
    return {
        **_base(),
        "data": {"values": values},
        "encoding": {"x": _x_axis(), "y": _y_axis(measure), "color": colour},
        "layer": [
            {
                "transform": [{"filter": {"field": "series", "equal": POINTS}}],
                "mark": {"type": "circle", "size": 28, "opacity": 0.6},
            },
            {
                "transform": [{"filter": {"field": "series", "equal": smooth}}],
                "mark": {"type": "line", "strokeWidth": 2},
            },
            *(
                []
                if trend is None
                else [
                    {
                        "transform": [{"filter": {"field": "series", "equal": TREND}}],
                        "mark": {"type": "line", "strokeWidth": 2, "strokeDash": [6, 4]},
                    }
                ]
            ),
        ],
    }


def agents_chart(agents: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any]:
    """One measure's rolling median (or mean) per agent, coloured by agent (with a legend)."""
    values: list[dict[str, Any]] = []
    first: Mapping[str, Any] | None = None
    for agent in agents:
        measure = next(m for m in agent["measures"] if m["key"] == key)
        first = first or measure
        values.extend({"x": p["x"], "y": p["smooth"], "agent": agent["agent_id"]} for p in measure["points"])
    assert first is not None
    title = f"{first['title']}, {first['smoothing']}"
    return {
        **_base(),
        "data": {"values": values},
        "mark": {"type": "line", "strokeWidth": 1.5, "point": len(values) <= 2 * len(agents)},
        "encoding": {
            "x": _x_axis(),
            "y": {**_y_axis(first), "title": title},
            "color": {
                "field": "agent",
                "type": "nominal",
                "title": "agent",
                "legend": {"orient": "bottom", "columns": 6, "symbolLimit": 60, "labelLimit": 160},
            },
        },
    }


MEASURES = ("time", "tokens", "cost", "success")


def agent_charts(agent: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """One agent's measures that have points, by key: each with its points, smoothing and trend."""
    return {m["key"]: measure_chart(m) for m in agent["measures"] if m["points"]}


def agents_page_charts(agents: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The agents page's charts by measure key: one agent's points, smoothing and trend (`agent_charts`), or,
    for several, every agent's smoothing on one chart per measure (`agents_chart`); none for no agent."""
    if len(agents) == 1:
        return agent_charts(agents[0])
    drawn = {m["key"] for a in agents for m in a["measures"] if m["points"]}
    return {k: agents_chart(agents, k) for k in MEASURES if k in drawn}


def timeline_chart(stays: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One iteration's phase stays as bars over time, each labelled with its phase and event version; the
    failed stay in red."""
    values = [
        {
            "stay": f"v{s['version']} {s['phase']}",
            "phase": s["phase"],
            "start": iso(s["entered_at"]),
            "end": iso(s["left_at"]),
            "duration": s["text"],
            "version": s["version"],
        }
        for s in stays
    ]
    phases = list(dict.fromkeys(s["phase"] for s in stays))
    palette = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#f0e442", "#999999", "#000000"]
    range_ = [("#d55e00" if p == "failed" else palette[i % len(palette)]) for i, p in enumerate(phases)]
    return {
        **_base(height=max(60, 24 * len(values))),
        "data": {"values": values},
        "mark": {"type": "bar"},
        "encoding": {
            "y": {"field": "stay", "type": "nominal", "sort": {"field": "version"}, "title": "phase (event version)"},
            "x": {"field": "start", "type": "temporal", "title": "time (UTC)", "axis": {"format": "%H:%M:%S"}},
            "x2": {"field": "end"},
            "color": {
                "field": "phase",
                "type": "nominal",
                "title": "phase",
                "scale": {"domain": phases, "range": range_},
                "legend": {"orient": "bottom"},
            },
            "tooltip": [
                {"field": "phase", "type": "nominal"},
                {"field": "duration", "type": "nominal", "title": "time in phase"},
                {"field": "version", "type": "quantitative", "title": "event version"},
            ],
        },
    }


def failures_chart(groups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Failed iterations per phase failed in (a horizontal bar per phase)."""
    counts: dict[str, int] = {}
    for g in groups:
        counts[g["phase"]] = counts.get(g["phase"], 0) + g["count"]
    return {
        **_base(height=max(60, 26 * len(counts))),
        "data": {"values": [{"phase": p, "failures": n} for p, n in counts.items()]},
        "mark": {"type": "bar", "color": "#d55e00"},
        "encoding": {
            "y": {"field": "phase", "type": "nominal", "sort": "-x", "title": "phase failed in"},
            "x": {
                "field": "failures",
                "type": "quantitative",
                "title": "failed iterations",
                "axis": {"format": ",d", "tickMinStep": 1, "tickCount": 8},
            },
        },
    }


# Phases in a timeline: one colour each (Okabe-Ito); "failed" is always vermilion.
PHASE_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#f0e442", "#999999", "#000000")
FAILED = "#d55e00"
_STATISTICS = ("mean", "median", "95th percentile")


def phase_time_chart(phases: Sequence[Mapping[str, Any]], unit: str) -> dict[str, Any]:
    """Time per iteration in each phase: a bar for the mean, ticks for the median and the 95th percentile.

    `phases`: in order, each {"phase", "mean", "median", "p95"} in `unit` ("ms", "s", "min" or "h") and
    {"mean_text", "median_text", "p95_text"} as people read them."""
    values = [
        {"phase": p["phase"], "statistic": name, "value": p[key], "text": p[f"{key}_text"]}
        for p in phases
        for name, key in zip(_STATISTICS, ("mean", "median", "p95"), strict=True)
    ]
    return {
        **_base(height=max(60, 30 * len(phases))),
        "data": {"values": values},
        "encoding": {
            "y": {"field": "phase", "type": "nominal", "sort": None, "title": "phase"},
            "x": {
                "field": "value",
                "type": "quantitative",
                "title": f"time per iteration in the phase ({unit})",
                "axis": {"format": _Y_FORMATS["time"], "tickCount": 6},
            },
            "color": {
                "field": "statistic",
                "type": "nominal",
                "title": None,
                "scale": {"domain": list(_STATISTICS), "range": ["#56b4e9", "#000000", FAILED]},
                "legend": {"orient": "bottom"},
            },
            "tooltip": [
                {"field": "phase", "type": "nominal"},
                {"field": "statistic", "type": "nominal"},
                {"field": "text", "type": "nominal", "title": "time"},
            ],
        },
        "layer": [
            {"transform": [{"filter": {"field": "statistic", "equal": "mean"}}], "mark": {"type": "bar"}},
            {
                "transform": [{"filter": {"field": "statistic", "oneOf": list(_STATISTICS[1:])}}],
                "mark": {"type": "tick", "thickness": 3},
            },
        ],
    }


def phase_tokens_chart(phases: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Tokens per iteration in each phase (a horizontal bar per phase). `phases`: {"phase", "tokens"}."""
    return {
        **_base(height=max(60, 30 * len(phases))),
        "data": {"values": [{"phase": p["phase"], "tokens": p["tokens"]} for p in phases]},
        "mark": {"type": "bar", "color": "#0072b2"},
        "encoding": {
            "y": {"field": "phase", "type": "nominal", "sort": None, "title": "phase"},
            "x": {
                "field": "tokens",
                "type": "quantitative",
                "title": "tokens per iteration that entered the phase (mean)",
                "axis": {"format": _Y_FORMATS["tokens"], "tickCount": 6},
            },
            "tooltip": [
                {"field": "phase", "type": "nominal"},
                {"field": "tokens", "type": "quantitative", "format": ",.0f"},
            ],
        },
    }


def timelines_chart(rows: Sequence[Mapping[str, Any]], unit: str, scale: float) -> dict[str, Any]:
    """Several iterations' phase stays on one axis of time since each started (a Gantt chart, a row per
    iteration in the given order), each bar with its phase and event version; an iteration's failure is a red
    cross where it failed, on a bar outlined in red.

    `rows`: {"label" (unique), "stays": [{"phase", "version", "start_s", "end_s", "text", "failed_in"}],
    "failed_at_s" (None unless it failed), "error"}; `unit` and `scale` (seconds per unit) from
    `units.seconds_unit`."""
    bars: list[dict[str, Any]] = []
    marks: list[dict[str, Any]] = []
    for row in rows:
        for s in row["stays"]:
            bars.append(
                {
                    "iteration": row["label"],
                    "phase": s["phase"],
                    "start": s["start_s"] / scale,
                    "end": s["end_s"] / scale,
                    "duration": s["text"],
                    "version": s["version"],
                    "failed_in": s["failed_in"],
                }
            )
        if row["failed_at_s"] is not None:
            marks.append(
                {"iteration": row["label"], "phase": "failed", "at": row["failed_at_s"] / scale, "error": row["error"]}
            )
    phases = list(dict.fromkeys(b["phase"] for b in bars if b["phase"] != "failed"))
    domain = [*phases, "failed"] if marks else phases
    colours = [*(PHASE_COLOURS[i % len(PHASE_COLOURS)] for i in range(len(phases))), FAILED][: len(domain)]
    colour = {
        "field": "phase",
        "type": "nominal",
        "title": "phase",
        "scale": {"domain": domain, "range": colours},
        "legend": {"orient": "bottom"},
    }
    y = {
        "field": "iteration",
        "type": "nominal",
        "sort": [r["label"] for r in rows],
        "title": None,
        "axis": {"labelLimit": 320},
    }
    x_title = f"time since the iteration started ({unit})"
    layers: list[dict[str, Any]] = [
        {
            "data": {"values": bars},
            "mark": {"type": "bar", "height": {"band": 0.7}},
            "encoding": {
                "y": y,
                "x": {"field": "start", "type": "quantitative", "title": x_title, "axis": {"format": ",.3~r"}},
                "x2": {"field": "end"},
                "color": colour,
                "stroke": {"condition": {"test": "datum.failed_in", "value": FAILED}, "value": None},
                "strokeWidth": {"condition": {"test": "datum.failed_in", "value": 2}, "value": 0},
                "tooltip": [
                    {"field": "iteration", "type": "nominal"},
                    {"field": "phase", "type": "nominal"},
                    {"field": "duration", "type": "nominal", "title": "time in phase"},
                    {"field": "version", "type": "quantitative", "title": "event version"},
                ],
            },
        },
    ]
    if marks:
        layers.append(
            {
                "data": {"values": marks},
                "mark": {"type": "point", "shape": "cross", "size": 140, "filled": True, "opacity": 1},
                "encoding": {
                    "y": y,
                    "x": {"field": "at", "type": "quantitative", "title": x_title},
                    "color": colour,
                    "tooltip": [
                        {"field": "iteration", "type": "nominal"},
                        {"field": "error", "type": "nominal", "title": "failed"},
                    ],
                },
            }
        )
    return {**_base(height=max(60, 26 * len(rows))), "layer": layers}
