"""Read models of a tracker's store: finding its views, and the in-process keeper that answers queries."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.prices import load_price_table
from itertrack.adapters.store.unavailable import store_unavailable_as_typed_error
from itertrack.adapters.views.follower import Follower
from itertrack.adapters.views.lock import ProjectionLock
from itertrack.adapters.views.runner import ViewRunner, catch_up
from itertrack.adapters.views.tables import ViewTables
from itertrack.domain.model.errors import InvalidInputError, StoreConfigError
from itertrack.domain.model.phases import Status
from itertrack.domain.model.text import parse_iteration_id
from itertrack.domain.service.tracker import PerformanceTracker
from itertrack.projections.costing import COST_GROUPS, CostReport, calls_of_rows, cost_report, unattributed_tokens
from itertrack.projections.pricing import PriceTable
from itertrack.projections.projection import DEFAULT_BATCH_SIZE, ReadModelsResetError
from itertrack.projections.rows import (
    AgentMetric,
    CurrentPhase,
    IterationMetric,
    LLMCallRow,
    LLMUsageTotal,
    PhaseDuration,
    ReadModelPosition,
)

log = logging.getLogger("itertrack")


@runtime_checkable
class StoreWithViews(Protocol):
    """What every itertrack store factory provides: its read-model tables and the lock of their runner."""

    def read_model_views(self) -> ViewTables: ...

    def projection_lock(self) -> ProjectionLock: ...


def view_for(factory: object) -> ViewTables:
    """The read-model tables on the same database (and connection pool) as a store factory.

    Raises `StoreConfigError` for a store without read models (memory) or a factory not of itertrack's,
    `StoreNotMigratedError` for PostgreSQL tables of an older shape.
    """
    if not isinstance(factory, StoreWithViews):
        raise StoreConfigError("store", type(factory).__name__, "has no read models")
    return factory.read_model_views()


def lock_for(factory: object) -> ProjectionLock:
    """The lock that keeps one projection runner per store."""
    if not isinstance(factory, StoreWithViews):
        raise StoreConfigError("store", type(factory).__name__, "has no read models")
    return factory.projection_lock()


def view_position(tracker: PerformanceTracker, view: ViewTables) -> ReadModelPosition:
    """How far the views are, and how far the log goes."""
    return ReadModelPosition(applied=view.position(), latest=store_of(tracker).recorder.max_notification_id() or 0)


class ReadModels:
    """Keeps a tracker's read models current from inside the host's process, and answers queries.

    With `background`, a thread keeps the views' runner (`ViewRunner`) going: it applies new events
    as the subscription sees them (woken by each save of the tracker, and every `poll_interval`
    seconds on SQLite for other processes' events). A `Follower` keeps it: after an outage it starts
    another with a capped, jittered back-off (queries meanwhile raise `StoreUnavailableError`); after a
    failure waiting cannot fix it stops, and every query raises that failure's typed error.
    Every query first waits until the views hold every event recorded so far (without
    `background`, it runs a one-shot catch-up instead), so a read right after a write sees it.
    """

    def __init__(
        self,
        tracker: PerformanceTracker,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        poll_interval: float = 0.05,
        background: bool = True,
        catch_up_on_read: bool = True,
    ) -> None:
        self.tracker = tracker
        # The store's migrate step (run on first use of SQLite, by `itertrack migrate` on PostgreSQL)
        # has created the view tables along with the events table.
        self.view = view_for(store_of(tracker).factory)
        self.batch_size = batch_size
        # False for a read-only role: queries then read the views as they are.
        self.catch_up_on_read = catch_up_on_read
        self._catching_up = threading.Lock()
        self._applied = 0
        self._closed = threading.Event()
        self._runner: ViewRunner | None = None
        self._keeper_error: Exception | None = None
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._follower = Follower(
            lambda: ViewRunner(
                self.tracker, self.view, batch_size=self.batch_size, on_batch=self._count, poll_interval=poll_interval
            ),
            name="read models",
            on_change=self._publish,
        )
        if background:
            tracker.add_save_listener(self._on_saved)
            self._thread = threading.Thread(target=self._keep_current, name="itertrack-read-models", daemon=True)
            self._thread.start()

    # -- the keeper thread ----------------------------------------------------------------------

    def _keep_current(self) -> None:
        """Run the views' runner until closed, through outages (see `Follower`); a failure waiting cannot fix
        ends the keeper, and every query then raises it."""
        try:
            self._follower.run()
        except Exception as e:
            log.error("read models stopped: %s", e)  # noqa: TRY400  # the one line; readers get the error
            self._publish(None, e)

    def _publish(self, runner: ViewRunner | None, error: Exception | None) -> None:
        with self._changed:
            self._runner, self._keeper_error = runner, error
            if runner is not None and self._closed.is_set():
                runner.stop()
            self._changed.notify_all()

    def _count(self, applied: int) -> None:
        with self._changed:
            self._applied += applied

    def _on_saved(self, _notification_id: int) -> None:
        runner = self._runner
        if runner is not None:
            runner.wake()

    def _live_runner(self) -> ViewRunner | None:
        """The keeper's running runner (None once closed); the keeper's last error if it has none."""
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    self._closed.is_set()
                    or self._keeper_error is not None
                    or (self._runner is not None and not self._runner.is_interrupted.is_set())
                )
            )
            if self._closed.is_set():
                return None
            if self._keeper_error is not None:
                raise self._keeper_error
            return self._runner

    # -- catching up ----------------------------------------------------------------------------

    @store_unavailable_as_typed_error()
    def sync(self) -> int:
        """Bring the views up to every event recorded so far; returns how many were applied meanwhile."""
        target = store_of(self.tracker).recorder.max_notification_id() or 0
        before = self._applied
        while self.view.position() < target:
            runner = self._live_runner() if self._thread is not None else None
            if runner is None:
                with self._catching_up:
                    self._count(catch_up(self.tracker, self.view, batch_size=self.batch_size))
                break
            try:
                reached = runner.wait_until(target, timeout=1.0)
            except ReadModelsResetError:
                continue  # emptied under it by a rebuild: the keeper starts another from their new position
            if not reached:
                runner.wake()  # a second without reaching it: never wait on a notification alone
            elif self.view.position() < target:
                runner.stop()  # the views were emptied under it: the keeper starts one from their position
        return self._applied - before

    def _fresh(self) -> None:
        if self.catch_up_on_read:
            self.sync()

    def position(self) -> ReadModelPosition:
        """How far the read models are behind the log."""
        return view_position(self.tracker, self.view)

    def current_phase(self, iteration_id: UUID | str) -> CurrentPhase:
        """Where one iteration is now."""
        iid = parse_iteration_id(iteration_id)
        self._fresh()
        return self.view.current_phase(iid)

    def iterations(
        self,
        agent: str | None = None,
        phase: str | None = None,
        status: Status | str | None = None,
        limit: int = 1000,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[CurrentPhase]:
        """Iterations, newest first, by agent, phase and status, started in [since, until) (timezone-aware)."""
        self._fresh()
        return self.view.iterations(agent=agent, phase=phase, status=status, limit=limit, since=since, until=until)

    def metrics(self, iteration_id: UUID | str) -> list[IterationMetric]:
        """One iteration's metric totals."""
        iid = parse_iteration_id(iteration_id)
        self._fresh()
        return self.view.metrics(iid)

    def agent_metrics(self, agent: str | None = None) -> list[AgentMetric]:
        """Per-agent totals (every agent when `agent` is None)."""
        self._fresh()
        return self.view.agent_metrics(agent)

    def metrics_started(
        self, agent: str | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> list[AgentMetric]:
        """Metric totals over the iterations (of one agent) started in [since, until) (see `ViewQueries`)."""
        self._fresh()
        return self.view.metrics_started(agent, since, until)

    def overall_metrics(self) -> list[AgentMetric]:
        """Totals across all agents."""
        self._fresh()
        return self.view.overall_metrics()

    def phase_durations(self, iteration_id: UUID | str) -> list[PhaseDuration]:
        """Time spent in each phase of one iteration, from event timestamps."""
        iid = parse_iteration_id(iteration_id)
        self._fresh()
        return self.view.phase_durations(iid)

    def llm_calls(
        self,
        iteration_id: UUID | str | None = None,
        *,
        agent: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[LLMCallRow]:
        """LLM calls, one row each, of one iteration or agent, recorded in [since, until), oldest first."""
        iid = None if iteration_id is None else parse_iteration_id(iteration_id)
        self._fresh()
        return self.view.llm_calls(iid, agent=agent, since=since, until=until)

    def llm_usage(self, iteration_id: UUID | str) -> list[LLMUsageTotal]:
        """One iteration's LLM calls and tokens per (phase, provider, model)."""
        iid = parse_iteration_id(iteration_id)
        self._fresh()
        return self.view.llm_usage(iid)

    def agent_llm_usage(self, agent: str | None = None) -> list[LLMUsageTotal]:
        """LLM calls and tokens per (agent, provider, model); every agent when `agent` is None."""
        self._fresh()
        return self.view.agent_llm_usage(agent)

    def cost(
        self,
        iteration_id: UUID | str | None = None,
        *,
        agent: str | None = None,
        by: Sequence[str] = ("phase", "model"),
        prices: PriceTable | None = None,
    ) -> CostReport:
        """What LLM calls cost, in dollars at read time: of one iteration, of one agent, or of everything.

        Each call is priced at the rates in force on its date in `prices` (default: the table in force,
        `ITERTRACK_PRICES` or the shipped one), and grouped by `by` (any of `phase`, `model`, `provider`,
        `agent`, `iteration`). Unpriced calls and tokens no call explains are counted apart, never as $0; the
        report names the table version. Raises `PriceTableError` for a bad price file, `InvalidInputError` for
        an unknown grouping or a bad id.
        """
        unknown = [name for name in by if name not in COST_GROUPS]
        if unknown:
            raise InvalidInputError("by", unknown[0], f"must be one of {', '.join(COST_GROUPS)}")
        table = load_price_table() if prices is None else prices
        iid = None if iteration_id is None else parse_iteration_id(iteration_id)
        self._fresh()
        calls = calls_of_rows(self.view.llm_calls(iid, agent=agent))
        totals: dict[str, int | float]
        if iid is not None:
            totals = {m.metric: m.total for m in self.view.metrics(iid)}
        elif agent is not None:
            totals = {m.metric: m.total for m in self.view.agent_metrics(agent)}
        else:
            totals = {m.metric: m.total for m in self.view.overall_metrics()}
        extra = unattributed_tokens(totals, calls, self.tracker.catalog.names)
        return cost_report(calls, table, by, unattributed_tokens=extra)

    def close(self) -> None:
        """Stop keeping the read models current (the tracker stays open)."""
        self.tracker.remove_save_listener(self._on_saved)
        with self._changed:
            self._closed.set()
            self._follower.stop()
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ReadModels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
