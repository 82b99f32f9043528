"""Test helpers shared by every layer of the suite."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.store.url import parse_store_url
from itertrack.domain import PerformanceTracker
from itertrack.projections.fold import LoadedState, fold
from scripts.tcp_proxy import TcpProxy

__all__ = ["TcpProxy"]  # tests import it from here; the drills share it


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.002) -> None:
    """Poll `condition` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # the polling interval of a wait on a condition


def all_events(tracker: PerformanceTracker) -> list[Any]:
    """Every event in the store, in log order."""
    notifications = store_of(tracker).recorder.select_notifications(start=0, limit=10**9)
    return [store_of(tracker).mapper.to_domain_event(n) for n in notifications]


def fold_models(tracker: PerformanceTracker) -> dict[str, Any]:
    """The read models as a fold of the store's whole event history computes them (the reference)."""
    changes = fold(all_events(tracker), LoadedState())
    return {
        "current": dict(changes.current),
        "metrics": dict(changes.metrics),
        "agents": dict(changes.agent_deltas),
        "durations": dict(changes.durations),
        "llm_calls": dict(changes.llm_calls),
    }


def view_models(view: Any) -> dict[str, Any]:
    """The read models as the view tables hold them, in the same shape as `fold_models`."""
    current = {row.id: row for row in view.iterations(limit=10**9)}
    metrics = {(m.iteration_id, m.metric): m.total for iid in current for m in view.metrics(iid)}
    agents = {(a.agent_id, a.metric): (a.total, a.iterations) for a in view.agent_metrics()}
    durations = {
        (d.iteration_id, d.phase): (d.duration_ms, d.visits) for iid in current for d in view.phase_durations(iid)
    }
    llm_calls = {(c.iteration_id, c.version): c for c in view.llm_calls()}
    return {"current": current, "metrics": metrics, "agents": agents, "durations": durations, "llm_calls": llm_calls}


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def assert_same_models(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal read models; numbers compared to 1e-9 (PostgreSQL sums floats as exact decimals)."""
    assert actual["current"] == expected["current"]
    assert actual["llm_calls"] == expected["llm_calls"]
    for part in ("metrics", "agents", "durations"):
        assert actual[part].keys() == expected[part].keys(), part
        different = {
            k: (actual[part][k], expected[part][k])
            for k in expected[part]
            if not _close(actual[part][k], expected[part][k])
        }
        assert different == {}, part


@contextmanager
def raw_sql(store: str) -> Iterator[Callable[[str, tuple[Any, ...]], None]]:
    """Run hand-written SQL against the store, as an operator (or an attacker) would."""
    url = parse_store_url(store)
    if url.scheme == "sqlite":
        conn = sqlite3.connect(url.path)

        def run_sqlite(query: str, params: tuple[Any, ...]) -> None:
            conn.execute(query.replace("%s", "?"), params)

        try:
            yield run_sqlite
            conn.commit()
        finally:
            conn.close()
    else:
        with psycopg.connect(store.split("?", maxsplit=1)[0], autocommit=True) as pg:
            pg.execute(f'SET search_path TO "{url.schema_name}"')

            def run_pg(query: str, params: tuple[Any, ...]) -> None:
                pg.execute(query, params)

            yield run_pg
