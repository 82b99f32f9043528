"""`itertrack report --json` on a seeded demo store equals statistics computed here, from the events."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from documents_support import payload

from itertrack.adapters.demo.fakes import Scenario, SimulatedClock
from itertrack.adapters.demo.run import run_demo
from itertrack.domain import Iteration, PerformanceTracker

Open = Callable[..., PerformanceTracker]
ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
TERMINAL = {"completed", "failed"}


@pytest.fixture
def seeded(durable_store: str, open_tracker: Open) -> tuple[str, PerformanceTracker, list[uuid.UUID]]:
    clock = SimulatedClock(start=datetime(2026, 3, 1, tzinfo=UTC), new_id=uuid.uuid4)
    tracker = open_tracker(durable_store, clock=clock)
    run = run_demo(tracker, Scenario(clock, seed=11, failure_rate=0.3), iterations=18, agents=3)
    return durable_store, tracker, list(run.iteration_ids)


def per_phase_ms(events: list[Any]) -> tuple[dict[str, float], str | None]:
    """Milliseconds per phase from event timestamps, and the phase a failed iteration failed in."""
    spent: dict[str, float] = defaultdict(float)
    phase, entered, failed_in = "initializing", events[0].timestamp, None
    spent[phase] += 0.0
    for event in events[1:]:
        if isinstance(event, Iteration.PhaseChanged):
            spent[phase] += (event.timestamp - entered).total_seconds() * 1000
            if event.phase == "failed":
                failed_in = phase
            phase, entered = event.phase, event.timestamp
            if phase not in TERMINAL:
                spent[phase] += 0.0
    return dict(spent), failed_in


# Two-sided 95% quantiles of Student's t by degrees of freedom (any statistics table, e.g. NIST's
# Engineering Statistics Handbook 1.3.6.7.2), for the slopes' intervals.
t_95 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
}  # fmt: skip


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, abs_tol=2e-3))


def test_report_json_equals_independent_statistics(seeded: tuple[str, PerformanceTracker, list[uuid.UUID]]) -> None:
    """Per-phase time stats and tokens, failures by phase and per-agent totals and trends all match."""
    store, tracker, ids = seeded
    result = subprocess.run(
        [ITERTRACK, "report", "--store", store, "--json"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    report = payload(result.stdout, "report")

    times: dict[str, list[float]] = defaultdict(list)
    tokens: dict[str, float] = defaultdict(float)
    failures: dict[str, Counter[str]] = defaultdict(Counter)
    agents: dict[str, list[tuple[int, float, float, str]]] = defaultdict(list)
    for iid in ids:
        state = tracker.get_iteration(iid)
        spent, failed_in = per_phase_ms(tracker.history(iid))
        for phase, ms in spent.items():
            times[phase].append(ms)
            tokens[phase] += state.metrics.get(f"{phase}_tokens", 0)
        if state.status == "failed":
            assert failed_in is not None
            failures[failed_in][state.error or ""] += 1
        total_tokens = sum(state.metrics.get(f"{p}_tokens", 0) for p in spent)
        agents[state.agent_id].append((state.iteration_number, sum(spent.values()), total_tokens, state.status.value))

    assert report["totals"]["iterations"] == len(ids)
    assert {p["phase"] for p in report["phases"]} == set(times)
    for p in report["phases"]:
        values = times[p["phase"]]
        p95 = statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]
        assert p["iterations"] == len(values)
        assert close(p["time_ms_mean"], statistics.fmean(values)), p["phase"]
        assert close(p["time_ms_p50"], statistics.median(values)), p["phase"]
        assert close(p["time_ms_p95"], p95), p["phase"]
        assert close(p["time_ms_max"], max(values)), p["phase"]
        assert p["tokens"] == tokens[p["phase"]]
        assert close(p["tokens_per_iteration"], tokens[p["phase"]] / len(values))

    assert {f["phase"]: f["count"] for f in report["failures"]} == {k: sum(v.values()) for k, v in failures.items()}
    for f in report["failures"]:
        assert {e["error"]: e["count"] for e in f["errors"]} == dict(failures[f["phase"]])

    assert [a["agent_id"] for a in report["agents"]] == sorted(agents)
    for a in report["agents"]:
        rows = sorted(agents[a["agent_id"]])
        done = [r for r in rows if r[3] != "running"]
        completed = sum(r[3] == "completed" for r in rows)
        failed = sum(r[3] == "failed" for r in rows)
        assert (a["iterations"], a["completed"], a["failed"]) == (len(rows), completed, failed)
        assert close(a["success_rate"], completed / (completed + failed))
        assert close(a["time_ms"], sum(r[1] for r in rows))
        assert a["tokens"] == sum(r[2] for r in rows)
        xs = [float(r[0]) for r in done]
        for key, ys in (
            ("time_ms_per_iteration_number", [r[1] for r in done]),
            ("tokens_per_iteration_number", [r[2] for r in done]),
            ("success_per_iteration_number", [1.0 if r[3] == "completed" else 0.0 for r in done]),
        ):
            fit = a["trend"][key]
            line = statistics.linear_regression(xs, ys)
            assert close(fit["slope"], line.slope)
            assert fit["n"] == len(done)
            # The 95% interval of the slope: t(n-2) times its standard error, from the residuals.
            n = len(done)
            mean_x = sum(xs) / n
            sxx = sum((x - mean_x) ** 2 for x in xs)
            residuals = sum((y - line.intercept - line.slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
            half = t_95[n - 2] * (residuals / (n - 2) / sxx) ** 0.5
            assert close(fit["low"], line.slope - half)
            assert close(fit["high"], line.slope + half)
            assert fit["clear"] is (fit["low"] > 0 or fit["high"] < 0)
        half = len(done) // 2
        first = sum(r[3] == "completed" for r in done[:half]) / half
        second = sum(r[3] == "completed" for r in done[half:]) / (len(done) - half)
        assert close(a["trend"]["success_rate_first_half"], first)
        assert close(a["trend"]["success_rate_second_half"], second)


def test_report_filters_by_agent_and_start_time(seeded: tuple[str, PerformanceTracker, list[uuid.UUID]]) -> None:
    """--agent keeps one agent's iterations; --since/--until keep those started in [since, until)."""
    store, tracker, ids = seeded
    states = [tracker.get_iteration(i) for i in ids]
    cut = states[9].started_at

    def report(*args: str) -> dict[str, Any]:
        result = subprocess.run(
            [ITERTRACK, "report", "--store", store, "--json", *args], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = payload(result.stdout, "report")
        return data

    assert report("--agent", "agent-2")["totals"]["iterations"] == sum(s.agent_id == "agent-2" for s in states)
    assert report("--since", cut.isoformat())["totals"]["iterations"] == sum(s.started_at >= cut for s in states)
    assert report("--until", cut.isoformat())["totals"]["iterations"] == sum(s.started_at < cut for s in states)
    bad = subprocess.run(
        [ITERTRACK, "report", "--store", store, "--since", "soon"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert "since='soon': is not an ISO-8601 timestamp" in bad.stderr
