"""What each dashboard page shows, as plain data: the HTML pages render it and their `/api/` twins return it.

Every function here blocks (store reads): the app runs them in its thread pool. Times are aware datetimes
(the JSON encoder writes ISO 8601 UTC with `Z`), dollars `Decimal` (written as strings, exact).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import ReadModels
from itertrack.adapters.views.queries import FinishedTokens
from itertrack.adapters.web.filters import Filters
from itertrack.adapters.web.units import human_duration, human_usd, seconds_unit
from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.metrics import tokens_metric
from itertrack.domain.model.phases import Status
from itertrack.domain.model.state import IterationState
from itertrack.domain.model.usage import USAGE_FIELDS
from itertrack.projections.costing import Call, calls_of_events, calls_of_rows, cost_report, price_calls
from itertrack.projections.pricing import PriceTable
from itertrack.projections.trend import Trend, fit_trend, median_window, rolling_median

# How many rows of each kind the board lists (newest first), and how many iterations a failure row links.
RUNNING_ROWS = 200
RECENT_ROWS = 20
LINKED_ITERATIONS = 20
# With a time range, how many of the newest rows of each board section are read, then filtered by start time.
TIME_FILTERED_ROWS = 2000
# The most points per agent a chart draws (the statistics use every point).
CHART_POINTS = 400


def calls_usd(calls: Iterable[Call], table: PriceTable) -> Decimal | None:
    """The dollars of the calls that have a price (each priced once, at its date); None when none has one."""
    total = price_calls(calls, table)
    return total.usd if total.priced_calls else None


@dataclass
class Dashboard:
    """What the pages read: the read models, the tracker behind them, the prices and the stale threshold."""

    models: ReadModels
    prices: PriceTable
    stale_after: timedelta = timedelta(minutes=10)
    phases: tuple[str, ...] = field(default=())
    # The dollars of finished iterations (they take no more calls), by id: each is priced once per process.
    finished_usd: dict[UUID, Decimal | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pricing = threading.Lock()
        self.phases = tuple(self.models.tracker.catalog.names)

    # -- positions --------------------------------------------------------------------------

    def log_position(self) -> int:
        """The last notification id in the store's log (0 when empty)."""
        return store_of(self.models.tracker).recorder.max_notification_id() or 0

    def health(self) -> dict[str, Any]:
        """The views' position and the log's."""
        views = self.models.view.position()
        log = self.log_position()
        return {"ok": True, "views_position": views, "log_position": log, "behind": max(0, log - views)}

    # -- the board --------------------------------------------------------------------------

    def board_row(self, iteration_id: UUID) -> dict[str, Any]:
        """One iteration's board row, read from its events (so it is current even when the views lag)."""
        tracker = self.models.tracker
        state = tracker.get_iteration(iteration_id)
        events = tracker.history(iteration_id)
        return self._row(state, events)

    def _row(self, state: IterationState, events: Sequence[Iteration.Event]) -> dict[str, Any]:
        phases = set(self.phases) | {p.phase for p in state.phase_history}
        tokens = sum(state.metrics.get(tokens_metric(p), 0) for p in phases)
        usd = calls_usd(calls_of_events(state.agent_id, events), self.prices)
        entered = state.phase_history[-1].entered_at
        failed_in = (
            state.phase_history[-2].phase if state.status is Status.FAILED and len(state.phase_history) > 1 else None
        )
        now = datetime.now(UTC)
        return {
            "iteration_id": str(state.id),
            "agent_id": state.agent_id,
            "iteration_number": state.iteration_number,
            "phase": state.phase,
            "status": str(state.status),
            "error": state.error,
            "failed_in": failed_in,
            "phase_entered_at": entered,
            "started_at": state.started_at,
            "updated_at": state.updated_at,
            "finished_at": state.finished_at,
            "version": state.version,
            "tokens": int(tokens),
            "usd": usd,
            "usd_text": human_usd(usd),
            "time_in_phase_text": human_duration((now - entered).total_seconds())
            if state.finished_at is None
            else human_duration((state.finished_at - state.started_at).total_seconds()),
            "stale": state.status is Status.RUNNING and now - state.updated_at > self.stale_after,
        }

    def board(self, filters: Filters) -> dict[str, Any]:
        """Running iterations (newest first), recent finishes and recent failures, and the log position the
        rows are current to (`position`: the live stream sends every change after it)."""
        models = self.models
        if models.catch_up_on_read:
            models.sync()
        position = models.view.position()  # read before the rows: a change after it is sent again, never lost
        sections: dict[str, list[dict[str, Any]]] = {}
        more = 0
        for status, limit in (
            (Status.RUNNING, RUNNING_ROWS),
            (Status.COMPLETED, RECENT_ROWS),
            (Status.FAILED, RECENT_ROWS),
        ):
            if filters.status is not None and filters.status is not status:
                sections[str(status)] = []
                continue
            fetch = limit + 1 if filters.since is None and filters.until is None else TIME_FILTERED_ROWS
            listed = [
                c
                for c in models.view.iterations(agent=filters.agent, status=status, limit=fetch)
                if filters.admits(agent_id=c.agent_id, status=str(c.status), started_at=c.started_at)
            ]
            if status is Status.RUNNING:
                more = max(0, len(listed) - limit)
            else:
                listed.sort(key=lambda c: c.finished_at or c.updated_at, reverse=True)
            sections[str(status)] = [self.board_row(c.id) for c in listed[:limit]]
        return {
            "position": position,
            "server_time": datetime.now(UTC),
            "stale_after_s": self.stale_after.total_seconds(),
            "filters": filters.as_query(),
            "running": sections["running"],
            "running_not_shown": more,
            "completed": sections["completed"],
            "failed": sections["failed"],
        }

    # -- one iteration ----------------------------------------------------------------------

    def iteration(
        self, iteration_id: UUID, *, version: int | None = None, at: datetime | None = None
    ) -> dict[str, Any]:
        """One iteration as of `version` or `at` (now when neither): its state, every event up to then (phase
        stays, failures, LLM calls with their cost), the saved record, and the versions to replay."""
        tracker = self.models.tracker
        history = tracker.history(iteration_id)
        latest = history[-1].originator_version
        if at is not None and version is None:
            version = tracker.version_at(iteration_id, at)
        state = tracker.get_iteration(iteration_id, version=version)
        shown = [e for e in history if e.originator_version <= state.version]
        calls = calls_of_events(state.agent_id, shown)
        report = cost_report(calls, self.prices, by=("phase", "model"))
        call_lines = iter([cost_report([c], self.prices, by=()).total for c in calls])  # in event order
        events: list[dict[str, Any]] = []
        for e in shown:
            row: dict[str, Any] = {"version": e.originator_version, "at": e.timestamp, "kind": type(e).__name__}
            if isinstance(e, Iteration.Started):
                row.update(phase="initializing", detail=f"agent {e.agent_id}, iteration {e.iteration_number}")
            elif isinstance(e, Iteration.PhaseChanged):
                row.update(phase=e.phase, error=e.error)
            elif isinstance(e, Iteration.MetricsRecorded):
                row.update(metrics=dict(e.metrics))
            elif isinstance(e, Iteration.LLMCallRecorded):
                usage = e.usage
                line = next(call_lines, None)
                row.update(
                    phase=e.phase,
                    provider=e.provider,
                    model=e.model,
                    input_tokens=None if usage is None else usage.input_tokens,
                    output_tokens=None if usage is None else usage.output_tokens,
                    cache_read_tokens=None if usage is None else usage.cache_read_input_tokens,
                    cache_write_tokens=None if usage is None else usage.cache_creation_input_tokens,
                    tokens=None if usage is None else usage.total,
                    usd=None if line is None else line.usd,
                    usd_text=human_usd(None if line is None else line.usd),
                    duration_ms=e.duration_ms,
                    request_id=e.request_id,
                )
            elif isinstance(e, Iteration.RecordSaved):
                row.update(detail=f"record saved ({e.status})")
            events.append(row)
        record = tracker.get_record(iteration_id)
        stays = []
        end = state.finished_at or (state.updated_at if version is not None else datetime.now(UTC))
        for i, entry in enumerate(state.phase_history):
            until = state.phase_history[i + 1].entered_at if i + 1 < len(state.phase_history) else end
            stays.append(
                {
                    "phase": entry.phase,
                    "version": entry.version,
                    "entered_at": entry.entered_at,
                    "left_at": until,
                    "seconds": max(0.0, (until - entry.entered_at).total_seconds()),
                    "text": human_duration((until - entry.entered_at).total_seconds()),
                    "failed": entry.phase == "failed",
                }
            )
        return {
            "iteration": state.model_dump(mode="python"),
            "version": state.version,
            "latest_version": latest,
            "replaying": state.version != latest,
            "stays": stays,
            "events": events,
            "cost": report.model_dump(mode="python"),
            "cost_text": human_usd(report.total.usd),
            "record": None if record is None else record.model_dump(mode="json"),
        }

    # -- agents -----------------------------------------------------------------------------

    def agents(self, filters: Filters) -> dict[str, Any]:
        """Per agent, over iteration number: wall time, tokens and cost of finished iterations, and success;
        each with a rolling median (a rolling mean for success), the least-squares trend and its 95% interval."""
        models = self.models
        if models.catch_up_on_read:
            models.sync()
        token_metrics = self._token_metrics()
        finished = [
            it
            for it in models.view.finished_tokens(token_metrics, filters.agent, filters.since, filters.until)
            if filters.admits(agent_id=it.agent_id, status=str(it.status), started_at=it.started_at)
        ]
        usd_of = self._finished_usd(finished, filters)
        per_agent: dict[str, list[FinishedTokens]] = defaultdict(list)
        for it in finished:
            per_agent[it.agent_id].append(it)
        agents = []
        for agent_id in sorted(per_agent):
            its = sorted(per_agent[agent_id], key=lambda it: it.iteration_number)
            numbers = [float(it.iteration_number) for it in its]
            seconds = [(it.finished_at - it.started_at).total_seconds() for it in its]
            tokens = [it.tokens for it in its]
            usd_points = [(float(it.iteration_number), usd_of.get(it.id)) for it in its]
            success = [1.0 if it.status is Status.COMPLETED else 0.0 for it in its]
            time_unit, time_scale = seconds_unit(seconds)
            measures = [
                _measure("time", f"wall time ({time_unit})", numbers, [s / time_scale for s in seconds], time_unit),
                _measure("tokens", "tokens", numbers, tokens, "tokens"),
                _measure(
                    "cost",
                    "cost (USD)",
                    [x for x, u in usd_points if u is not None],
                    [float(u) for _, u in usd_points if u is not None],
                    "USD",
                ),
                _measure(
                    "success", "success rate (%)", numbers, [100 * s for s in success], "percentage points", mean=True
                ),
            ]
            priced = [u for _, u in usd_points if u is not None]
            total_usd = sum(priced, Decimal(0)) if priced else None
            agents.append(
                {
                    "agent_id": agent_id,
                    "iterations": len(its),
                    "completed": int(sum(success)),
                    "failed": len(its) - int(sum(success)),
                    "success_rate": round(100 * sum(success) / len(its), 1),
                    "median_time_text": human_duration(sorted(seconds)[len(seconds) // 2] if seconds else None),
                    "total_usd": total_usd,
                    "total_usd_text": human_usd(total_usd),
                    "measures": measures,
                }
            )
        return {"filters": filters.as_query(), "agents": agents}

    def _token_metrics(self) -> list[str]:
        """The `<phase>_tokens` metrics in the store (the agents' metric names, less the per-kind counts), and
        those of the known phases."""
        known = {tokens_metric(p) for p in self.phases}
        kinds = tuple(f"_{kind}" for kind in USAGE_FIELDS)
        for m in self.models.view.agent_metrics():
            if m.metric.endswith("_tokens") and not m.metric.endswith(kinds):
                known.add(m.metric)
        return sorted(known)

    def _finished_usd(self, finished: Sequence[FinishedTokens], filters: Filters) -> dict[UUID, Decimal | None]:
        """Dollars of each finished iteration: remembered ones as they were, the others priced from the
        `llm_calls` view (calls since the filter's start: an iteration's calls come after it started)."""
        with self._pricing:  # one pricer at a time: a page waits for the warm-up instead of pricing the same calls
            self._price_missing([it for it in finished if it.id not in self.finished_usd], filters)
        return {it.id: self.finished_usd[it.id] for it in finished}

    def warm(self) -> int:
        """Price every finished iteration now (the server does it once at start, in the background), so the
        agents page does not; returns how many were priced."""
        finished = self.models.view.finished_tokens(self._token_metrics())
        before = len(self.finished_usd)
        self._finished_usd(finished, Filters())
        return len(self.finished_usd) - before

    def _price_missing(self, missing: Sequence[FinishedTokens], filters: Filters) -> None:
        """Price the calls of `missing` iterations, one agent at a time (so the calls held at once stay few)."""
        by_agent: dict[str, set[UUID]] = defaultdict(set)
        for it in missing:
            by_agent[it.agent_id].add(it.id)
        for agent, wanted in by_agent.items():
            by_iteration: dict[UUID, list[Call]] = defaultdict(list)
            for c in calls_of_rows(self.models.view.llm_calls(agent=agent, since=filters.since)):
                if c.iteration_id in wanted:
                    by_iteration[c.iteration_id].append(c)
            for iid in wanted:
                self.finished_usd[iid] = calls_usd(by_iteration.get(iid, ()), self.prices)

    # -- failures ---------------------------------------------------------------------------

    def failures(self, filters: Filters) -> dict[str, Any]:
        """Failed iterations grouped by the phase they failed in and their error, most frequent first, each
        with the newest iterations behind it."""
        if filters.status is not None and filters.status is not Status.FAILED:
            return {"filters": filters.as_query(), "failed": 0, "groups": []}
        models = self.models
        failed = [
            c
            for c in models.iterations(agent=filters.agent, status=Status.FAILED, limit=1_000_000)
            if filters.admits(agent_id=c.agent_id, status=str(c.status), started_at=c.started_at)
        ]
        groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for c in failed:
            groups[(c.failed_in or "-", c.error or "")].append(c)
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return {
            "filters": filters.as_query(),
            "failed": len(failed),
            "groups": [
                {
                    "phase": phase,
                    "error": error,
                    "count": len(its),
                    "iterations": [
                        {"iteration_id": str(c.id), "agent_id": c.agent_id, "iteration_number": c.iteration_number}
                        for c in its[:LINKED_ITERATIONS]
                    ],
                    "not_shown": max(0, len(its) - LINKED_ITERATIONS),
                }
                for (phase, error), its in ordered
            ],
        }


def _measure(
    key: str, title: str, xs: Sequence[float], ys: Sequence[float], unit: str, *, mean: bool = False
) -> dict[str, Any]:
    """One measure's points (thinned to `CHART_POINTS`), its rolling median (or mean), trend and verdict."""
    window = median_window(len(ys))
    trend = fit_trend(xs, ys)
    step = max(1, len(xs) // CHART_POINTS)
    keep = list(range(0, len(xs), step))
    if xs and keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)
    if mean:
        means = _rolling_mean(ys, window)
        smooth = [means[i] for i in keep]
    else:
        smooth = rolling_median(ys, window, keep)
    return {
        "key": key,
        "title": title,
        "unit": unit,
        "window": window,
        "smoothing": "rolling mean" if mean else "rolling median",
        "points": [{"x": xs[i], "y": ys[i], "smooth": s} for i, s in zip(keep, smooth, strict=True)],
        "trend": None
        if trend is None
        else {
            "slope": trend.slope,
            "low": trend.low,
            "high": trend.high,
            "n": trend.n,
            "clear": trend.clear,
            "from": {"x": xs[0], "y": trend.at(xs[0])},
            "to": {"x": xs[-1], "y": trend.at(xs[-1])},
        },
        "verdict": verdict(trend, unit, per=100 if key == "success" else 1),
    }


def _rolling_mean(ys: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, y in enumerate(ys):
        total += y
        if i >= window:
            total -= ys[i - window]
        out.append(total / min(i + 1, window))
    return out


def verdict(trend: Trend | None, unit: str, *, per: int = 1) -> str:
    """The trend in words with its 95% interval: "falling 1.2 s per iteration (95% CI 0.8 to 1.6)", or
    "no clear trend (...)" when the interval spans 0."""
    if trend is None or trend.low is None or trend.high is None:
        return "too few iterations for a trend"
    scale = per
    where = "per iteration" if per == 1 else f"per {per} iterations"
    slope, low, high = trend.slope * scale, trend.low * scale, trend.high * scale
    interval = f"95% CI {_num(low)} to {_num(high)} {unit} {where}; n = {trend.n:,}"
    if not trend.clear:
        return f"no clear trend ({interval})"
    direction = "rising" if slope > 0 else "falling"
    return f"{direction} {_num(abs(slope))} {unit} {where} ({interval})"


def _num(value: float) -> str:
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def parse_version(text: str | None) -> int | None:
    """A `?version=` value: a positive whole number, or None when absent."""
    if text is None or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        raise InvalidInputError("version", text, "must be a whole number from 1") from None
    if value < 1:
        raise InvalidInputError("version", text, "must be a whole number from 1")
    return value


def touched(notifications: Iterable[Any]) -> dict[UUID, int]:
    """The iterations the notifications changed, each with the last notification id that changed it."""
    last: dict[UUID, int] = {}
    for n in notifications:
        last[n.originator_id] = max(last.get(n.originator_id, 0), int(n.id))
    return last
