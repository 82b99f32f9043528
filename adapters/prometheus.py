"""Prometheus metrics of a store's read models: a collector that reads them at scrape time, its registry,
and the small HTTP server of `itertrack metrics-server`.

Every figure is read from the views (adapters/views/) when Prometheus scrapes, with SQL aggregates over
bounded groups (agent, status, phase, provider, model, token kind): no iteration id is ever a label value,
and no metric is kept in process memory between scrapes, so several servers on one store agree, and a
restart loses nothing. Counters are totals over the store's whole history; a rebuild of the views (or a new
price table, for cost) may lower them once, which Prometheus's `rate()` takes as a counter reset.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from itertrack.adapters.bootstrap import spooling_writer, store_of
from itertrack.adapters.feed.checkpoints import ConsumerTables
from itertrack.adapters.prices import load_price_table
from itertrack.adapters.views.keeper import ReadModels
from itertrack.domain.model.errors import InvalidInputError, IterationError
from itertrack.domain.model.phases import Status
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.projections.costing import CostReport, calls_of_rows, cost_report
from itertrack.projections.pricing import PriceTable
from itertrack.projections.rows import IterationCount, LLMUsageTotal, PhaseDurationBuckets

log = logging.getLogger("itertrack")

# Upper bounds (seconds) of the phase-duration buckets: an agent's phases take from under a second (a
# lookup) to hours (a backtest), so the bounds grow roughly x2-x3 from 0.1 s to a day.
PHASE_DURATION_BUCKETS: tuple[float, ...] = (
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    7200,
    21600,
    86400,
)
# The `kind` label of the token counter, and the `llm_calls` column it sums: the kinds tokens are billed by
# (projections/cost.py `TokenCounts`), each token counted once (`cache_creation_input_tokens` is the two
# cache-write columns together, so it is not a kind of its own).
TOKEN_KIND_COLUMNS: dict[str, str] = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_input_tokens",
    "cache_write_5m": "cache_creation_5m_input_tokens",
    "cache_write_1h": "cache_creation_1h_input_tokens",
}
METRICS_PATH = "/metrics"


def consumer_lags(tracker: PerformanceTracker) -> list[tuple[str, int]]:
    """(consumer name, events it is behind the log) for each named feed consumer that ran on the store, from its
    checkpoint row (adapters/feed/checkpoints.py); empty before the first consumer ran. Reads only: it never
    probes a consumer's lock, so a scrape cannot get in the way of a runner starting."""
    rows = ConsumerTables.of(store_of(tracker).factory).rows()
    if not rows:
        return []
    latest = store_of(tracker).recorder.max_notification_id() or 0
    return [(row.name, max(0, latest - row.position)) for row in rows]


class ReadModelCollector:
    """A `prometheus_client` collector of one store's read models, read at each scrape.

    `read_models`: the views to read (the caller opens and closes them). `catch_up`: bring the views up to
    the log first, at most once per scrape (a scrape that finds another one catching up reads the views as
    they are rather than wait; False for read-only roles). `prices`: the table cost is priced with (default:
    the one in force at construction, `ITERTRACK_PRICES` or the shipped one; raises `PriceTableError`).
    `buckets`: the phase-duration histogram's finite upper bounds in seconds, ascending.

    A store that cannot be read (unreachable, not migrated, any failure of a query) gives
    `itertrack_read_models_up 0` and nothing else, never an error page: the scrape itself still succeeds.
    """

    def __init__(
        self,
        read_models: ReadModels,
        *,
        catch_up: bool = True,
        prices: PriceTable | None = None,
        buckets: Sequence[float] = PHASE_DURATION_BUCKETS,
        lags: Callable[[PerformanceTracker], list[tuple[str, int]]] = consumer_lags,
    ) -> None:
        self.read_models = read_models
        self.catch_up = catch_up
        self.prices = load_price_table() if prices is None else prices
        self.buckets = tuple(float(b) for b in buckets)
        self.lags = lags
        self._catching_up = threading.Lock()
        self._cost_lock = threading.Lock()
        self._cost: tuple[int, CostReport] | None = None

    def describe(self) -> list[Metric]:
        """Nothing: registering the collector reads no store (names are only known at scrape time)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every family, read now (see the class docstring)."""
        try:
            families = self._read()
        except Exception as e:  # telemetry never breaks: an outage or a damaged view is a 0, not an error page
            log.warning("metrics: the read models cannot be read now: %s: %s", type(e).__name__, e)
            families = []
            up = 0
        else:
            up = 1
        yield GaugeMetricFamily(
            "itertrack_read_models_up", "1 if the store's read models were read for this scrape, else 0", value=up
        )
        yield from families

    # -- reading -------------------------------------------------------------------------------

    def _sync_once(self) -> None:
        if not self.catch_up or not self._catching_up.acquire(blocking=False):
            return
        try:
            self.read_models.sync()
        finally:
            self._catching_up.release()

    def _read(self) -> list[Metric]:
        """Read everything before yielding anything, so a failure never leaves half a scrape."""
        self._sync_once()
        view = self.read_models.view
        position = self.read_models.position()
        families = [
            GaugeMetricFamily(
                "itertrack_read_model_lag_events",
                "Events recorded in the store's log that the read models have not applied yet",
                value=position.lag,
            ),
            self._iterations(view.iteration_counts()),
            self._phase_durations(view.phase_duration_buckets(self.buckets)),
            *self._usage(view.phase_llm_usage()),
            *self._costs(position.applied),
        ]
        families.extend(self._spool())
        lags = self.lags(self.read_models.tracker)
        if lags:
            lag = GaugeMetricFamily(
                "itertrack_consumer_lag_events", "Events a named feed consumer is behind the log", labels=["consumer"]
            )
            for consumer, behind in lags:
                lag.add_metric([consumer], behind)
            families.append(lag)
        return families

    @staticmethod
    def _iterations(counts: Iterable[IterationCount]) -> Metric:
        family = GaugeMetricFamily(
            "itertrack_iterations", "Iterations of each agent in each status, now", labels=["agent", "status"]
        )
        by_agent: dict[str, dict[str, int]] = {}
        for row in counts:
            by_agent.setdefault(row.agent_id, {})[str(row.status)] = row.iterations
        for agent, statuses in by_agent.items():
            for status in Status:  # every status of a known agent, 0 included: alerts see a series go to 0
                family.add_metric([agent, status.value], statuses.get(status.value, 0))
        return family

    @staticmethod
    def _phase_durations(rows: Iterable[PhaseDurationBuckets]) -> Metric:
        family = HistogramMetricFamily(
            "itertrack_phase_duration_seconds",
            "Time an iteration spent in a phase per closed stay (several stays of one iteration in a phase "
            "count at their mean)",
            labels=["agent", "phase"],
        )
        for row in rows:
            buckets = [(_bound(bound), count) for bound, count in row.buckets]
            family.add_metric([row.agent_id, row.phase], [*buckets, ("+Inf", row.visits)], row.seconds)
        return family

    @staticmethod
    def _usage(rows: Iterable[LLMUsageTotal]) -> list[Metric]:
        labels = ["agent", "phase", "provider", "model"]
        calls = CounterMetricFamily("itertrack_llm_calls", "LLM calls recorded", labels=labels)
        unknown = CounterMetricFamily(
            "itertrack_llm_calls_without_usage",
            "LLM calls whose response reported no token usage (their tokens are not counted)",
            labels=labels,
        )
        tokens = CounterMetricFamily(
            "itertrack_llm_tokens",
            "Tokens of recorded LLM calls by billed kind (input excludes cache reads and writes)",
            labels=[*labels, "kind"],
        )
        for row in rows:
            key = [row.agent_id or "", row.phase or "", row.provider, row.model or ""]
            calls.add_metric(key, row.calls)
            unknown.add_metric(key, row.unknown_usage_calls)
            for kind, column in TOKEN_KIND_COLUMNS.items():
                tokens.add_metric([*key, kind], getattr(row, column))
        return [calls, unknown, tokens]

    def _cost_report(self, position: int) -> CostReport:
        """Every call priced at its own date, per (agent, provider, model); computed again only when the views
        moved (pricing needs each call: a prompt-size tier applies per call, so sums cannot be priced)."""
        with self._cost_lock:
            if self._cost is None or self._cost[0] != position:
                calls = calls_of_rows(self.read_models.view.llm_calls())
                self._cost = (position, cost_report(calls, self.prices, ("agent", "provider", "model")))
            return self._cost[1]

    def _costs(self, position: int) -> list[Metric]:
        report = self._cost_report(position)
        labels = ["agent", "provider", "model"]
        usd = CounterMetricFamily(
            "itertrack_llm_cost_usd",
            "Dollars the priced LLM calls cost, each priced at its own date's rates (read time, not stored)",
            labels=labels,
        )
        unpriced = CounterMetricFamily(
            "itertrack_llm_unpriced_tokens",
            "Tokens of LLM calls the price table cannot price (unknown model, none named): never counted as $0",
            labels=labels,
        )
        for line in report.lines:
            key = [line.group["agent"] or "", line.group["provider"] or "", line.group["model"] or ""]
            if line.usd is not None:
                usd.add_metric(key, _dollars(line.usd))
            unpriced.add_metric(key, line.unpriced_tokens)
        info = InfoMetricFamily(
            "itertrack_price_table", "The price table cost is priced with", value={"version": report.table_version}
        )
        return [usd, unpriced, info]

    def _spool(self) -> list[Metric]:
        """This host's outage spool (PostgreSQL stores with a spool; nothing for others)."""
        try:
            spool = spooling_writer(self.read_models.tracker).spool
        except IterationError:
            return []
        family = GaugeMetricFamily(
            "itertrack_spooled_changes",
            "Changes in this host's outage spool: waiting to be forwarded, or stuck (a person is needed)",
            labels=["state"],
        )
        family.add_metric(["waiting"], spool.count())
        family.add_metric(["stuck"], spool.stuck_count())
        return [family]


def _bound(seconds: float) -> str:
    """A finite bucket bound as the client library writes its own buckets' (`1.0`, `0.25`, `86400.0`)."""
    return repr(float(seconds))


def _dollars(value: Decimal) -> float:
    return float(value)


def build_registry(
    read_models: ReadModels, *, catch_up: bool = True, prices: PriceTable | None = None
) -> CollectorRegistry:
    """A registry holding only the read models' collector (no process or GC metrics), for `/metrics`.

    `itertrack metrics-server` serves it; `itertrack serve` can mount `metrics_app(registry)`. Raises
    `PriceTableError` for a bad `ITERTRACK_PRICES` file.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReadModelCollector(read_models, catch_up=catch_up, prices=prices))
    return registry


def metrics_app(registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    """A WSGI app answering `GET /metrics` with the registry (text format, or OpenMetrics when asked; gzip when
    accepted), and 404 for any other path."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in (METRICS_PATH, f"{METRICS_PATH}/"):
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"itertrack metrics are at {METRICS_PATH}\n".encode()]

    return app


class _QuietHandler(WSGIRequestHandler):
    """Requests are not logged (a scrape every few seconds would fill the log)."""

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's parameter names
        """Log nothing."""


def metrics_server(registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9464) -> WSGIServer:
    """An HTTP server (a thread per request) of `metrics_app(registry)`, bound to `host`:`port` (0: any free
    port; read it from `server.server_port`) but not yet serving: call `serve_forever()`, then `shutdown()`.

    Raises `InvalidInputError` naming `port` (or `host`) when the address cannot be bound.
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except OSError as e:
        raise InvalidInputError("host", host, f"cannot be resolved: {e.strerror or e}") from None

    class Server(socketserver.ThreadingMixIn, WSGIServer):
        address_family = family
        daemon_threads = True  # a scrape under way never holds up the stop

    try:
        return make_server(host, port, metrics_app(registry), Server, handler_class=_QuietHandler)
    except OSError as e:
        raise InvalidInputError("port", port, f"cannot be bound on {host}: {e.strerror or e}") from None
