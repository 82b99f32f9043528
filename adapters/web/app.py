"""The dashboard's ASGI app (Starlette): the pages, their `/api/` twins, the live stream and `/healthz`.

Read-only: every route reads the store or its views. Templates autoescape everything (agent ids, phases
and errors are host input); data for scripts rides in `<script type="application/json">` via `tojson`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from itertrack.adapters.documents.dashboard import AgentsData, IterationPageData
from itertrack.adapters.documents.envelope import render
from itertrack.adapters.prometheus import build_registry
from itertrack.adapters.web import charts
from itertrack.adapters.web.encode import jsonable
from itertrack.adapters.web.filters import Filters, parse_instant
from itertrack.adapters.web.guard import Guard
from itertrack.adapters.web.live import LiveFeed
from itertrack.adapters.web.pages import Dashboard, parse_version
from itertrack.adapters.web.templating import STATIC, environment
from itertrack.domain.model.errors import (
    InvalidInputError,
    IterationError,
    IterationNotFoundError,
    StoreUnavailableError,
)
from itertrack.domain.model.text import parse_iteration_id

log = logging.getLogger("itertrack")


class JSONOut(JSONResponse):
    """A document of the JSON vocabulary (`itertrack.adapters.documents`): `JSONOut("board", data)` answers
    `{"schema": "itertrack.board", "schema_version": N, "data": ...}` (times in ISO 8601 UTC with `Z`, dollars as
    exact strings)."""

    def __init__(self, name: str, data: BaseModel | dict[str, Any], status_code: int = 200) -> None:
        super().__init__(render(name, data), status_code=status_code)

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def _metrics_registry(dashboard: Dashboard) -> CollectorRegistry:
    """The Prometheus registry of the read models (adapters/prometheus.py), as `itertrack metrics-server` serves it."""
    models = dashboard.models
    return build_registry(models, catch_up=models.catch_up_on_read, prices=dashboard.prices)


class Handlers:
    """The dashboard's routes over one `Dashboard` (store reads run in the thread pool)."""

    def __init__(self, dashboard: Dashboard, feed: LiveFeed) -> None:
        self.dashboard = dashboard
        self.feed = feed
        self.templates = Jinja2Templates(env=environment())
        self.registry = _metrics_registry(dashboard)

    def page(self, request: Request, template: str, data: dict[str, Any], **extra: Any) -> Response:
        filters = Filters.parse(request.query_params)
        context = {"data": data, "json": jsonable(data), "filters": filters, "nav": request.url.path, **extra}
        return self.templates.TemplateResponse(request, template, context)

    async def board(self, request: Request) -> Response:
        filters = Filters.parse(request.query_params)
        data = await run_in_threadpool(self.dashboard.board, filters)
        if _is_api(request):
            return JSONOut("board", data)
        return self.page(request, "board.html", data, title="Live board")

    async def iteration(self, request: Request) -> Response:
        iid = parse_iteration_id(request.path_params["iteration_id"])
        version = parse_version(request.query_params.get("version"))
        at = parse_instant(request.query_params.get("at"), "at")
        data = await run_in_threadpool(lambda: self.dashboard.iteration(iid, version=version, at=at))
        if _is_api(request):
            events = await run_in_threadpool(self.dashboard.models.tracker.history, iid)
            return JSONOut("iteration", IterationPageData.of(data, events))
        chart = charts.timeline_chart(data["stays"])
        return self.page(request, "iteration.html", data, title=f"Iteration {iid}", chart_spec=jsonable(chart))

    async def agents(self, request: Request) -> Response:
        filters = Filters.parse(request.query_params)
        data = await run_in_threadpool(self.dashboard.agents, filters)
        if _is_api(request):
            return JSONOut("agents", AgentsData.of(data))
        specs = charts.agents_page_charts(data["agents"])
        return self.page(request, "agents.html", data, title="Agents", charts=jsonable(specs))

    async def failures(self, request: Request) -> Response:
        filters = Filters.parse(request.query_params)
        data = await run_in_threadpool(self.dashboard.failures, filters)
        if _is_api(request):
            return JSONOut("failures", data)
        chart = charts.failures_chart(data["groups"]) if data["groups"] else None
        return self.page(request, "failures.html", data, title="Failures", chart_spec=jsonable(chart))

    async def events(self, request: Request) -> Response:
        """Server-sent events: each changed iteration's board row, `id:` its log position. `Last-Event-ID` (a
        reconnecting browser's) or `?after=` (the position the page was rendered at) says where to resume."""
        after_text = request.headers.get("last-event-id") or request.query_params.get("after")
        after = None
        if after_text:
            try:
                after = max(0, int(after_text))
            except ValueError:
                raise InvalidInputError(
                    "Last-Event-ID", after_text, "must be a log position (a whole number)"
                ) from None
        return StreamingResponse(
            self.feed.stream(after, request.is_disconnected),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def healthz(self, _request: Request) -> Response:
        data = await run_in_threadpool(self.dashboard.health)
        data["live_clients"] = self.feed.clients
        data["live_position"] = self.feed.position
        return JSONOut("health", data)

    async def metrics(self, _request: Request) -> Response:
        """prometheus_client's text exposition of the read models' registry (each scrape reads the views)."""
        body = await run_in_threadpool(generate_latest, self.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def failure(self, status: int, text: str) -> Callable[[Request, Exception], Any]:
        """An exception handler answering `status` with the error's message (escaped in the page)."""

        async def handle(request: Request, exc: Exception) -> Response:
            message = str(exc)
            if _is_api(request) or request.url.path in ("/events", "/healthz"):
                return JSONOut("error", {"status": status, "error": message}, status_code=status)
            context = {"message": message, "status": status, "nav": "", "title": text, "filters": Filters()}
            return self.templates.TemplateResponse(request, "error.html", context, status_code=status)

        return handle


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def create_app(
    dashboard: Dashboard,
    *,
    token: str | None = None,
    poll_interval: float = 0.25,
    warm_up: bool = True,
    feed: LiveFeed | None = None,
    hosts: frozenset[str] | None = None,
) -> Guard:
    """The dashboard as an ASGI app; with `token`, every request must carry it (see `Guard`). With `warm_up`,
    finished iterations are priced in the background from the start (`Dashboard.warm`). `feed`: the live feed
    to use (its `close()` ends the streams when the server stops), else a new one. `hosts`: the only host names
    a request's `Host` may name (None: any)."""
    feed = feed or LiveFeed(dashboard, poll_interval=poll_interval)
    h = Handlers(dashboard, feed)

    async def warm() -> None:
        try:
            await asyncio.to_thread(dashboard.warm)
        except Exception as e:  # the agents page prices what it needs itself
            log.warning("dashboard: pricing finished iterations ahead failed: %s", e)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(feed.run(), name="itertrack-live-feed")]
        if warm_up:
            tasks.append(asyncio.create_task(warm(), name="itertrack-price-ahead"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    routes = [
        Route("/", h.board),
        Route("/api/board", h.board),
        Route("/iterations/{iteration_id}", h.iteration),
        Route("/api/iterations/{iteration_id}", h.iteration),
        Route("/agents", h.agents),
        Route("/api/agents", h.agents),
        Route("/failures", h.failures),
        Route("/api/failures", h.failures),
        Route("/events", h.events),
        Route("/healthz", h.healthz),
        Route("/metrics", h.metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            InvalidInputError: h.failure(400, "Bad request"),
            IterationNotFoundError: h.failure(404, "Not found"),
            StoreUnavailableError: h.failure(503, "Store unavailable"),
            IterationError: h.failure(500, "Store error"),
        },
    )
    app.state.feed = feed
    return Guard(app, token, hosts)
